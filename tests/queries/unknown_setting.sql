-- fail: 2:1 unknown setting 'table.exec.mini-batch.enabld'
SET 'table.exec.mini-batch.enabld' = 'true';
