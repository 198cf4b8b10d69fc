-- fail: 3:22 'sink.delivery-guarantee' = 'exactly-once' (Kafka transactions) is not supported yet
CREATE TABLE out (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 'o', 'properties.bootstrap.servers' = 'localhost:9092',
  'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once');
