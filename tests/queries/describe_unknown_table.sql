-- fail: 2:1 there is no table `nope`
DESCRIBE nope;
