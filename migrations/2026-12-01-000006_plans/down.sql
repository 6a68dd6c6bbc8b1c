DROP TABLE plan_charges;
DROP TABLE plan_versions;
DROP TABLE plans;
