-- fail: 3:70 'sink.flush-interval' = '99999999999999999999999 d' is not a duration
CREATE TABLE out (v STRING)
  WITH ('connector' = 'clickhouse', 'url' = 'http://127.0.0.1:8123', 'sink.flush-interval' = '99999999999999999999999 d');
