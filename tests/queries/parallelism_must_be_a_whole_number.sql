-- fail: 2:1 'parallelism.default' = '0': expected a whole number from 1 to 128
SET 'parallelism.default' = '0';
