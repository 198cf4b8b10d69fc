-- fail: 2:14 table `t` has no 'connector' option
CREATE TABLE t (v STRING) WITH ('path' = '/x');
