SELECT $1, a$b$c, $a$x;$b$;$a$, 1a$$, 1.5e+3, 0x'a', E'a'
'\';x';
PREPARE p AS SELECT $1x$;
