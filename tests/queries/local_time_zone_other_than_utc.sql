-- fail: 2:1 'table.local-time-zone' = 'Europe/Berlin' is not supported yet
SET 'table.local-time-zone' = 'Europe/Berlin';
