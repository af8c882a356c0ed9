INSERT INTO t VALUES ('it''s; ok', E'\'';', U&'d\0061t', "we;ird""id");
SELECT B'01', X'1F', n'x';
