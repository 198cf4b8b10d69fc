-- fail: 5:1 an OVER window must be ordered by the event-time attribute ascending: ORDER BY ts
CREATE TABLE t (k STRING, v DOUBLE, ts TIMESTAMP(3), other TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector' = 'datagen');
CREATE TABLE o (k STRING, s DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO o SELECT k, SUM(v) OVER (PARTITION BY k ORDER BY other ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) FROM t;
