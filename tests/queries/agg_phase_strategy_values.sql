-- fail: 2:1 'table.optimizer.agg-phase-strategy' = 'THREE_PHASE' must be 'AUTO', 'ONE_PHASE' or 'TWO_PHASE'
SET 'table.optimizer.agg-phase-strategy' = 'THREE_PHASE';
