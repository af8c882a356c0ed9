/* Unit tests for lib/adapters/s3: the [storage] loader, URLs, the part size,
 * S3's XML answers and the resume state file. The requests themselves are
 * tested against a real s3rver in tests/integration/t6000-s3-adapter.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters/s3.h"
#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"

#define MIB S3_MIB

/* ---- settings ---- */

static const char base_conf[] = "[storage \"minio\"]\n"
				"type = s3\n"
				"endpoint = http://localhost:9000/\n"
				"bucket = backups\n"
				"prefix = /ai-chat/\n"
				"path_style = yes\n"
				"access_key_env = T_S3_ACCESS\n"
				"secret_key_env = T_S3_SECRET\n";

/* Loads base_conf + extra with an env file holding both keys (unless env_text is given). */
static int load(const char *extra, const char *env_text, struct s3_settings *s, struct ops_error *err)
{
	struct config cfg;
	struct envfile env;
	struct strbuf text = STRBUF_INIT;
	int ret;

	config_init(&cfg);
	envfile_init(&env);
	strbuf_addf(&text, "%s%s", base_conf, extra);
	if (!env_text)
		env_text = "T_S3_ACCESS=AKIAEXAMPLE\nT_S3_SECRET=wJalr/secret\n";
	assert_int_equal(envfile_parse(&env, "/opt/app/.env", env_text, strlen(env_text), err), 0);
	ret = config_load_string(&cfg, "test.conf", text.buf, &env, err);
	if (ret == 0)
		ret = s3_settings_load(s, &cfg, "minio", &env, err);
	strbuf_release(&text);
	envfile_release(&env);
	config_release(&cfg);
	return ret;
}

static void test_settings_defaults(void **state)
{
	struct s3_settings s;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	s3_settings_init(&s);
	assert_int_equal(load("", NULL, &s, &err), 0);
	assert_string_equal(s.name, "minio");
	assert_string_equal(s.endpoint, "http://localhost:9000");
	assert_string_equal(s.bucket, "backups");
	assert_string_equal(s.prefix, "ai-chat");
	assert_string_equal(s.region, "us-east-1");
	assert_int_equal(s.path_style, 1);
	assert_int_equal(s.verify_tls, 1);
	assert_null(s.ca_file);
	assert_string_equal(s.access_key, "AKIAEXAMPLE");
	assert_string_equal(s.secret_key, "wJalr/secret");
	assert_string_equal(s.access_key_env, "T_S3_ACCESS");
	assert_string_equal(s.credentials_from, "'/opt/app/.env'");
	assert_int_equal(s.part_size, 0);
	assert_int_equal(s.concurrency, S3_DEFAULT_CONCURRENCY);
	assert_int_equal(s.timeout_ms, S3_DEFAULT_TIMEOUT_MS);
	s3_settings_release(&s);

	s3_settings_init(&s);
	assert_int_equal(load("region = eu-central-1\nverify_tls = no\npart_size = 16M\nconcurrency = 8\n"
			      "timeout = 1m\n",
			      NULL, &s, &err),
			 0);
	assert_string_equal(s.region, "eu-central-1");
	assert_int_equal(s.verify_tls, 0);
	assert_int_equal(s.part_size, 16 * MIB);
	assert_int_equal(s.concurrency, 8);
	assert_int_equal(s.timeout_ms, 60000);
	s3_settings_release(&s);
	ops_error_release(&err);
}

static void test_settings_keys_from_environment(void **state)
{
	struct s3_settings s;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	setenv("T_S3_ACCESS", "from-environ", 1);
	setenv("T_S3_SECRET", "secret-environ", 1);
	s3_settings_init(&s);
	/* the env file wins over the environment */
	assert_int_equal(load("", "T_S3_ACCESS=from-file\n", &s, &err), 0);
	assert_string_equal(s.access_key, "from-file");
	assert_string_equal(s.secret_key, "secret-environ");
	s3_settings_release(&s);
	unsetenv("T_S3_ACCESS");
	unsetenv("T_S3_SECRET");

	s3_settings_init(&s);
	assert_int_equal(load("", "T_S3_ACCESS=a\n", &s, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf,
			    "test.conf:8: T_S3_SECRET (secret_key_env) is set neither in '/opt/app/.env' nor in the environment");
	assert_string_equal(err.hint.buf, "add T_S3_SECRET=... to the app's env file ([app] env_file)");
	s3_settings_release(&s);
	ops_error_release(&err);
}

static void expect_config_error(const char *extra, const char *msg)
{
	struct s3_settings s;
	struct ops_error err = OPS_ERROR_INIT;

	s3_settings_init(&s);
	assert_int_equal(load(extra, NULL, &s, &err), -OPS_EXIT_CONFIG);
	assert_int_equal(err.code, OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, msg);
	s3_settings_release(&s);
	ops_error_release(&err);
}

static void test_settings_errors(void **state)
{
	struct s3_settings s;
	struct ops_error err = OPS_ERROR_INIT;
	struct config cfg;
	(void)state;

	/* a key written into the config itself is refused, pointing at *_env */
	expect_config_error("access_key = AKIAEXAMPLE\n",
			    "test.conf:9: 'storage.minio.access_key': keys are not kept in the config file; "
			    "use access_key_env = VARIABLE");
	expect_config_error("secret_key = xyz\n",
			    "test.conf:9: 'storage.minio.secret_key': keys are not kept in the config file; "
			    "use secret_key_env = VARIABLE");
	expect_config_error("pathstyle = yes\n", "test.conf:9: unknown key 'storage.minio.pathstyle'");
	expect_config_error("part_size = 1M\n",
			    "test.conf:9: part_size must be between 5M and 5G (S3's limits), not '1M'");
	expect_config_error("concurrency = 0\n",
			    "test.conf:9: invalid value for 'storage.minio.concurrency': number '0' is out of range "
			    "(expected 1 to 32)");
	expect_config_error("verify_tls = maybe\n",
			    "test.conf:9: invalid value for 'storage.minio.verify_tls': invalid boolean 'maybe' "
			    "(expected yes/no, true/false, on/off, 1/0)");
	expect_config_error("ca_file = /nonexistent/ca.pem\n",
			    "test.conf:9: cannot read ca_file '/nonexistent/ca.pem': no such file or directory");

	/* missing pieces and a bad endpoint or bucket */
	config_init(&cfg);
	s3_settings_init(&s);
	assert_int_equal(config_load_string(&cfg, "t.conf",
					    "[storage \"x\"]\ntype = s3\nendpoint = ftp://h\nbucket = b\n", NULL, &err),
			 0);
	assert_int_equal(s3_settings_load(&s, &cfg, "x", NULL, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "t.conf:3: endpoint 'ftp://h' is not an http:// or https:// URL");
	s3_settings_release(&s);
	config_release(&cfg);

	config_init(&cfg);
	s3_settings_init(&s);
	assert_int_equal(config_load_string(&cfg, "t.conf",
					    "[storage \"x\"]\ntype = s3\nendpoint = http://h\nbucket = Bad_Bucket\n",
					    NULL, &err),
			 0);
	assert_int_equal(s3_settings_load(&s, &cfg, "x", NULL, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "t.conf:4: 'Bad_Bucket' is not a bucket name (3-63 of a-z 0-9 . -)");
	s3_settings_release(&s);
	config_release(&cfg);

	config_init(&cfg);
	s3_settings_init(&s);
	assert_int_equal(config_load_string(&cfg, "t.conf",
					    "[storage \"x\"]\ntype = s3\nendpoint = http://h\nbucket = bkt\n", NULL, &err),
			 0);
	assert_int_equal(s3_settings_load(&s, &cfg, "x", NULL, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "[storage \"x\"] in 't.conf' needs access_key_env = VARIABLE "
					 "(the env file or environment variable holding the access key)");
	s3_settings_release(&s);

	s3_settings_init(&s);
	assert_int_equal(s3_settings_load(&s, &cfg, "nope", NULL, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "no [storage \"nope\"] in 't.conf'");
	s3_settings_release(&s);
	config_release(&cfg);

	config_init(&cfg);
	s3_settings_init(&s);
	assert_int_equal(config_load_string(&cfg, "t.conf", "[storage \"x\"]\ntype = gcs\n", NULL, &err), 0);
	assert_int_equal(s3_settings_load(&s, &cfg, "x", NULL, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "t.conf:2: unknown storage type 'gcs' (expected s3)");
	s3_settings_release(&s);
	config_release(&cfg);
	ops_error_release(&err);
}

/* ---- URLs ---- */

static void test_urls(void **state)
{
	struct s3_settings s;
	struct strbuf url = STRBUF_INIT;
	(void)state;

	s3_settings_init(&s);
	s.endpoint = xstrdup("http://127.0.0.1:9000");
	s.bucket = xstrdup("backups");
	s.prefix = xstrdup("ai-chat");
	s.path_style = 1;

	s3_url(&s, "APP-20261122T010203Z/manifest.json", NULL, &url);
	assert_string_equal(url.buf, "http://127.0.0.1:9000/backups/ai-chat/APP-20261122T010203Z/manifest.json");
	s3_url(&s, "a b/c+d&é", "partNumber=3&uploadId=x", &url);
	assert_string_equal(url.buf, "http://127.0.0.1:9000/backups/ai-chat/a%20b/c%2Bd%26%C3%A9?partNumber=3&uploadId=x");
	/* the bucket itself: the prefix goes into the query of a listing */
	s3_url(&s, "", "list-type=2&prefix=ai-chat%2F", &url);
	assert_string_equal(url.buf, "http://127.0.0.1:9000/backups/?list-type=2&prefix=ai-chat%2F");

	s.path_style = 0;
	free(s.endpoint);
	s.endpoint = xstrdup("https://s3.eu-central-1.amazonaws.com/base");
	s3_url(&s, "k/v.dump", "uploads=", &url);
	assert_string_equal(url.buf, "https://backups.s3.eu-central-1.amazonaws.com/base/ai-chat/k/v.dump?uploads=");

	free(s.prefix);
	s.prefix = xstrdup("");
	s3_url(&s, "k", NULL, &url);
	assert_string_equal(url.buf, "https://backups.s3.eu-central-1.amazonaws.com/base/k");

	strbuf_reset(&url);
	s3_uri_encode(&url, "a/b~c_d.e-f*g", 0);
	assert_string_equal(url.buf, "a%2Fb~c_d.e-f%2Ag");
	strbuf_release(&url);
	s3_settings_release(&s);
}

/* ---- part size ---- */

static void test_part_size(void **state)
{
	(void)state;
	assert_int_equal(s3_part_size(0, 0), 8 * MIB);
	assert_int_equal(s3_part_size(1000, 0), 8 * MIB);
	assert_int_equal(s3_part_size(1024ULL * 1024 * 1024, 0), 8 * MIB);       /* 1 GiB: 128 parts */
	assert_int_equal(s3_part_size(75ULL * 1024 * MIB, 0), 9 * MIB);          /* 75 GiB / 9000 = 8.53 MiB */
	assert_int_equal(s3_part_size(100ULL * 1024 * MIB, 0), 12 * MIB);        /* 11.38 MiB, rounded up */
	assert_int_equal(s3_part_size(100ULL * 1024 * MIB, 64 * MIB), 64 * MIB); /* the configured one is larger */
	assert_int_equal(s3_part_size(50000000, 1 * MIB), 1 * MIB);
	/* never more than 9000 parts, never above S3's 5 GiB */
	assert_true((1024ULL * 1024 * MIB + s3_part_size(1024ULL * 1024 * MIB, 0) - 1) /
			    s3_part_size(1024ULL * 1024 * MIB, 0) <= S3_PART_SPREAD);
	assert_int_equal(s3_part_size(UINT64_MAX / 2, 0), S3_MAX_PART_SIZE);
}

/* ---- XML ---- */

static void test_parse_error(void **state)
{
	struct strbuf code = STRBUF_INIT, msg = STRBUF_INIT;
	const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			  "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided "
			  "does not exist in our records.</Message><AWSAccessKeyId>X</AWSAccessKeyId>"
			  "<RequestId>1</RequestId></Error>";
	(void)state;

	assert_int_equal(s3_parse_error(xml, strlen(xml), &code, &msg), 0);
	assert_string_equal(code.buf, "InvalidAccessKeyId");
	assert_string_equal(msg.buf, "The AWS Access Key Id you provided does not exist in our records.");

	assert_int_equal(s3_parse_error("<ListBucketResult/>", 19, &code, &msg), -1);
	assert_string_equal(code.buf, "");
	assert_int_equal(s3_parse_error("not xml at all", 14, &code, &msg), -1);
	assert_int_equal(s3_parse_error("", 0, &code, &msg), -1);
	assert_int_equal(s3_parse_error(NULL, 0, &code, &msg), -1);
	/* entities stay unexpanded: an answer cannot read local files */
	xml = "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
	      "<Error><Code>&x;</Code><Message>m</Message></Error>";
	assert_int_equal(s3_parse_error(xml, strlen(xml), &code, &msg), 0);
	assert_null(strstr(code.buf, "root:"));
	strbuf_release(&code);
	strbuf_release(&msg);
}

static void test_parse_initiate(void **state)
{
	struct strbuf id = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			  "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			  "<Bucket>backups</Bucket><Key>a/b</Key>"
			  "<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>"
			  "</InitiateMultipartUploadResult>";
	(void)state;

	assert_int_equal(s3_parse_initiate(xml, strlen(xml), &id, &err), 0);
	assert_string_equal(id.buf, "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA");

	xml = "<InitiateMultipartUploadResult><Bucket>b</Bucket></InitiateMultipartUploadResult>";
	assert_int_equal(s3_parse_initiate(xml, strlen(xml), &id, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "the storage's answer to starting a multipart upload has no UploadId");
	xml = "<InitiateMultipartUploadResult><UploadId>a b</UploadId></InitiateMultipartUploadResult>";
	assert_int_equal(s3_parse_initiate(xml, strlen(xml), &id, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "the storage sent an UploadId with control characters");
	strbuf_release(&id);
	ops_error_release(&err);
}

static void test_parse_list(void **state)
{
	struct s3_list l = S3_LIST_INIT;
	struct strbuf token = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	const char *page1 =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		"<Name>backups</Name><Prefix>ai-chat/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
		"<IsTruncated>true</IsTruncated><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="
		"</NextContinuationToken>"
		"<Contents><Key>ai-chat/APP-1/db.dump</Key><LastModified>2026-11-22T02:24:02.000Z</LastModified>"
		"<ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>434234</Size>"
		"<StorageClass>STANDARD</StorageClass></Contents>"
		"<Contents><Key>ai-chat/APP-1/manifest.json</Key><LastModified>2026-11-22T02:24:03.000Z</LastModified>"
		"<ETag>\"6f1fa61b723121fa8103f8b8226527cf-12\"</ETag><Size>12</Size></Contents>"
		"<Contents><Key>elsewhere/x</Key><Size>1</Size></Contents>"
		"</ListBucketResult>";
	const char *page2 = "<ListBucketResult><IsTruncated>false</IsTruncated>"
			    "<Contents><Key>ai-chat/APP-2/db.dump</Key><Size>0</Size></Contents></ListBucketResult>";
	const char *xml;
	(void)state;

	assert_int_equal(s3_parse_list(page1, strlen(page1), "ai-chat/", &l, &token, &err), 0);
	assert_int_equal(l.nr, 2);
	assert_string_equal(l.items[0].key, "APP-1/db.dump");
	assert_int_equal(l.items[0].size, 434234);
	assert_string_equal(l.items[0].etag, "9b2cf535f27731c974343645a3985328");
	assert_int_equal(l.items[0].last_modified, 1795314242);
	assert_string_equal(l.items[1].key, "APP-1/manifest.json");
	assert_string_equal(l.items[1].etag, "6f1fa61b723121fa8103f8b8226527cf-12");
	assert_string_equal(token.buf, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

	assert_int_equal(s3_parse_list(page2, strlen(page2), "ai-chat/", &l, &token, &err), 0);
	assert_int_equal(l.nr, 3);
	assert_string_equal(l.items[2].key, "APP-2/db.dump");
	assert_int_equal(l.items[2].last_modified, 0);
	assert_string_equal(token.buf, "");
	s3_list_release(&l);

	xml = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
	assert_int_equal(s3_parse_list(xml, strlen(xml), "", &l, &token, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "the storage's listing is truncated but has no NextContinuationToken");
	xml = "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>";
	assert_int_equal(s3_parse_list(xml, strlen(xml), "", &l, &token, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "the storage listed 'k' with a size of '-1'");
	s3_list_release(&l);
	assert_int_equal(s3_parse_list("<Error/>", 8, "", &l, &token, &err), -OPS_EXIT_FAILED);
	assert_string_equal(err.msg.buf, "the storage's answer to a listing is not a ListBucketResult");
	s3_list_release(&l);
	strbuf_release(&token);
	ops_error_release(&err);
}

/* ---- the resume state ---- */

static void test_state_round_trip(void **state)
{
	char dir[] = "/tmp/opsctl-test-s3-XXXXXX";
	struct s3_upload_state st, back;
	struct ops_error err = OPS_ERROR_INIT;
	struct strbuf path = STRBUF_INIT;
	struct stat sb;
	FILE *f;
	(void)state;

	assert_non_null(mkdtemp(dir));
	strbuf_addf(&path, "%s/db.dump.upload.json", dir);
	s3_upload_state_init(&st);
	s3_upload_state_init(&back);

	assert_int_equal(s3_upload_state_load(&back, path.buf, &err), 1); /* none yet */

	st.endpoint = xstrdup("http://127.0.0.1:9000");
	st.bucket = xstrdup("backups");
	st.key = xstrdup("ai-chat/APP-1/db.dump");
	st.upload_id = xstrdup("2~iCw_lDY8VoAp-iSMCfNLTNnOcADKzL3");
	st.size = 50000000;
	st.mtime_ns = 1795314242123456789LL; /* beyond a double's exact range */
	st.part_size = 8 * MIB;
	st.nparts = 6;
	st.etags = xcalloc(6, sizeof(char *));
	st.etags[0] = xstrdup("9b2cf535f27731c974343645a3985328");
	st.etags[3] = xstrdup("6f1fa61b723121fa8103f8b8226527cf");
	/* an SSE-KMS part: the ETag is no MD5, the MD5 sent is kept beside it */
	st.etags[4] = xstrdup("a1b2c3d4e5f60718293a4b5c6d7e8f90kms");
	st.md5s = xcalloc(6, sizeof(char *));
	st.md5s[4] = xstrdup("0cc175b9c0f1b6a831c399e269772661");
	assert_int_equal(s3_upload_state_save(&st, path.buf, &err), 0);
	assert_int_equal(stat(path.buf, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	assert_int_equal(s3_upload_state_load(&back, path.buf, &err), 0);
	assert_string_equal(back.endpoint, st.endpoint);
	assert_string_equal(back.bucket, "backups");
	assert_string_equal(back.key, "ai-chat/APP-1/db.dump");
	assert_string_equal(back.upload_id, "2~iCw_lDY8VoAp-iSMCfNLTNnOcADKzL3");
	assert_int_equal(back.size, 50000000);
	assert_true(back.mtime_ns == 1795314242123456789LL);
	assert_int_equal(back.part_size, 8 * MIB);
	assert_int_equal(back.nparts, 6);
	assert_string_equal(back.etags[0], "9b2cf535f27731c974343645a3985328");
	assert_null(back.etags[1]);
	assert_string_equal(back.etags[3], "6f1fa61b723121fa8103f8b8226527cf");
	assert_null(back.md5s[3]); /* written by an earlier version: the ETag is the MD5 */
	assert_string_equal(back.etags[4], "a1b2c3d4e5f60718293a4b5c6d7e8f90kms");
	assert_string_equal(back.md5s[4], "0cc175b9c0f1b6a831c399e269772661");
	assert_null(back.etags[5]);

	/* a part number beyond the file, or garbage: not a state file */
	f = fopen(path.buf, "w");
	fputs("{\"version\":1,\"endpoint\":\"e\",\"bucket\":\"b\",\"key\":\"k\",\"upload_id\":\"u\",\"size\":10,"
	      "\"mtime_ns\":\"1\",\"part_size\":5,\"parts\":[{\"part\":3,\"etag\":\"x\"}]}",
	      f);
	fclose(f);
	assert_int_equal(s3_upload_state_load(&back, path.buf, &err), -OPS_EXIT_FAILED);
	{
		char *want = xstrfmt("'%s' is not an upload state file of opsctl", path.buf);
		assert_string_equal(err.msg.buf, want);
		free(want);
	}
	assert_null(back.upload_id);
	f = fopen(path.buf, "w");
	fputs("{\"version\":1,", f);
	fclose(f);
	assert_int_equal(s3_upload_state_load(&back, path.buf, &err), -OPS_EXIT_FAILED);

	unlink(path.buf);
	rmdir(dir);
	s3_upload_state_release(&st);
	s3_upload_state_release(&back);
	strbuf_release(&path);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_settings_defaults),
		cmocka_unit_test(test_settings_keys_from_environment),
		cmocka_unit_test(test_settings_errors),
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_part_size),
		cmocka_unit_test(test_parse_error),
		cmocka_unit_test(test_parse_initiate),
		cmocka_unit_test(test_parse_list),
		cmocka_unit_test(test_state_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
