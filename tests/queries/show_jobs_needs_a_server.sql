-- fail: 2:1 SHOW JOBS and STOP JOB talk to a job server, which Sluice does not have yet
SHOW JOBS;
