-- plan: regular join Inner on 1 key(s): every row kept (no table.exec.state.ttl: for ever)
CREATE TABLE t (k STRING, v DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'datagen');
CREATE TABLE o (k STRING, v DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO o SELECT a.k, b.v FROM t a JOIN t b ON a.k = b.k AND b.ts >= a.ts;
