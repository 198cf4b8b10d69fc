-- fail: 2:27 connector 'filesystem' has no metadata columns (column `off`)
CREATE TABLE t (v STRING, off BIGINT METADATA FROM 'offset')
  WITH ('connector' = 'filesystem', 'path' = '/x', 'format' = 'json');
