-- fail: 2:1 SHOW JOBS and STOP JOB belong in the shell (not yet there); in a file, use `sluice jobs` and `sluice stop JOB`
SHOW JOBS;
