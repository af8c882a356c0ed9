CREATE FUNCTION sign_name(x int) RETURNS text LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN x > 0 THEN 'pos' ELSE 'neg' END;
  SELECT 'done';
END;
create or replace procedure p() begin atomic insert into t values (1); end;
