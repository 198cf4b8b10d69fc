-- fail: 2:1 'sluice.workers' = 'many': expected 'single' (this process runs the whole job) or 'kafka-group'
SET 'sluice.workers' = 'many';
