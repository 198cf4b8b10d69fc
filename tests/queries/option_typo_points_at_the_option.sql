-- fail: 3:71 unknown option 'json.fail-on-missing-feild' for connector 'filesystem' (did you mean 'json.fail-on-missing-field'?)
CREATE TABLE t (v STRING)
  WITH ('connector' = 'filesystem', 'path' = '/x', 'format' = 'json', 'json.fail-on-missing-feild' = 'true');
