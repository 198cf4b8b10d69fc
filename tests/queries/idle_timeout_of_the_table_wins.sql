-- plan: idle timeout: 2s
SET 'table.exec.source.idle-timeout' = '5 s';
CREATE TABLE t (vehicle_id STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
  WITH ('connector' = 'kafka', 'topic' = 'x', 'properties.bootstrap.servers' = '127.0.0.1:1',
        'format' = 'json', 'scan.watermark.idle-timeout' = '2 s',
        'scan.startup.mode' = 'earliest-offset');
SELECT vehicle_id FROM t;
