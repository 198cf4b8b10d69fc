-- fail: 2:1 'parallelism.default' = '4' is not supported yet
SET 'parallelism.default' = '4';
