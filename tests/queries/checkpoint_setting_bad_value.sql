-- fail: 3:1 'execution.checkpointing.mode' = 'twice': expected 'EXACTLY_ONCE' or 'AT_LEAST_ONCE'
SET 'execution.checkpointing.interval' = '10 s';
SET 'execution.checkpointing.mode' = 'twice';
