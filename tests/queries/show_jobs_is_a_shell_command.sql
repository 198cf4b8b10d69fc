-- fail: 2:1 SHOW JOBS and STOP JOB are shell commands: run the file with `sluice shell -f`
SHOW JOBS;
