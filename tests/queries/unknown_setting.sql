-- fail: 2:1 unknown setting 'table.exec.mini-batch.enabled'
SET 'table.exec.mini-batch.enabled' = 'true';
