/* outer /* inner; */ still; */ SELECT 1 -- trailing;
;
SELECT (1;
2);
