-- fail: 3:1 'sluice.workers' = 'kafka-group': a job of several workers reads Kafka topics; `readings` is a filesystem table
CREATE TABLE readings (vehicle_id STRING, speed DOUBLE) WITH ('connector' = 'filesystem', 'path' = '${TMP}/r.jsonl', 'format' = 'json');
SET 'sluice.workers' = 'kafka-group';
CREATE TABLE out (vehicle_id STRING, speed DOUBLE) WITH ('connector' = 'blackhole');
INSERT INTO out SELECT vehicle_id, speed FROM readings;
