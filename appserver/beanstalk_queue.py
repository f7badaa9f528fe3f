"""placeholder until minisys.beanstalk lands"""
