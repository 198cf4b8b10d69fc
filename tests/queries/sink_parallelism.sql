-- fail: 2:58 'sink.parallelism' = '4' is not supported yet
CREATE TABLE out (v STRING) WITH ('connector' = 'print', 'sink.parallelism' = '4');
