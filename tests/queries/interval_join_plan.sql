-- plan: interval join Inner on 1 key(s), right time − left time in [-5000 ms, 10000 ms] and a condition
-- plan: ← source #0, source #0  [state: o/interval-join]
CREATE TABLE t (k STRING, v DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'datagen');
CREATE TABLE o (k STRING, v DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO o SELECT a.k, b.v FROM t a JOIN t b
  ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '5' SECOND AND a.ts + INTERVAL '10' SECOND AND b.v > a.v;
