-- fail: 3:1 'execution.checkpointing.interval' is not supported yet
SET 'pipeline.name' = 'x';
SET 'execution.checkpointing.interval' = '10 s';
