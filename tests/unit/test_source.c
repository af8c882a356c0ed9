/* Unit tests for lib/engines/source: the [source] settings (defaults, the
 * Qdrant preset, generic templates, secrets by name only) with the exact
 * errors users see, template filling, the JSON field paths, Redis addresses
 * and manifest entries. Backups and restores against real servers are in
 * tests/integration/t6100-sources.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/envfile.h"
#include "base/exitcode.h"
#include "engines/source.h"

/* Loads [source "name"] from text; returns the result, s filled. */
static int load(const char *text, const char *env_text, const char *name, struct src_settings *s,
		struct ops_error *err)
{
	struct config cfg;
	struct envfile env;
	int ret;

	config_init(&cfg);
	envfile_init(&env);
	src_settings_init(s);
	if (env_text)
		assert_int_equal(envfile_parse(&env, "app.env", env_text, strlen(env_text), err), 0);
	ret = config_load_string(&cfg, "t.conf", text, NULL, err);
	assert_int_equal(ret, 0);
	ret = src_settings_load(s, &cfg, env_text ? &env : NULL, name, err);
	config_release(&cfg);
	envfile_release(&env);
	return ret;
}

/* The error of loading text as [source "x"]: code and message. */
static void expect_error(const char *text, const char *env_text, int code, const char *msg)
{
	struct src_settings s;
	struct ops_error err = OPS_ERROR_INIT;

	assert_int_equal(load(text, env_text, "x", &s, &err), -code);
	assert_int_equal(err.code, code);
	assert_string_equal(err.msg.buf, msg);
	src_settings_release(&s);
	ops_error_release(&err);
}

static void test_redis_defaults(void **state)
{
	struct src_settings s;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(load("[source \"cache\"]\ntype = redis\n", NULL, "cache", &s, &err), 0);
	assert_int_equal(s.type, SRC_REDIS);
	assert_string_equal(s.host, "127.0.0.1");
	assert_int_equal(s.port, 6379);
	assert_null(s.unix_socket);
	assert_null(s.password);
	assert_null(s.rdb_path);
	assert_int_equal(s.timeout_ms, 600000);
	assert_int_equal(s.connect_timeout_ms, 10000);
	assert_int_equal(s.check, SRC_CHECK_KEYS);
	assert_string_equal(s.display, "redis 127.0.0.1:6379");
	src_settings_release(&s);

	assert_int_equal(load("[source \"cache\"]\ntype = redis\naddress = redis.internal:6380\n"
			      "password_env = REDIS_PASSWORD\nusername = app\nrdb_path = /var/lib/redis/dump.rdb\n"
			      "stop = systemctl stop redis\nstart = systemctl start redis\nrestore_check = keys-equal\n"
			      "timeout = 2m\nconnect_timeout = 3s\n",
			      "REDIS_PASSWORD=pw from env file\n", "cache", &s, &err), 0);
	assert_string_equal(s.host, "redis.internal");
	assert_int_equal(s.port, 6380);
	assert_string_equal(s.username, "app");
	assert_string_equal(s.password_env, "REDIS_PASSWORD");
	assert_string_equal(s.password, "pw from env file");
	assert_string_equal(s.rdb_path, "/var/lib/redis/dump.rdb");
	assert_string_equal(s.stop_cmd, "systemctl stop redis");
	assert_string_equal(s.start_cmd, "systemctl start redis");
	assert_int_equal(s.check, SRC_CHECK_KEYS_EQUAL);
	assert_int_equal(s.timeout_ms, 120000);
	assert_int_equal(s.connect_timeout_ms, 3000);
	assert_string_equal(s.display, "redis redis.internal:6380");
	src_settings_release(&s);

	/* the environment when the env file does not have it */
	setenv("OPSCTL_TEST_REDIS_PW", "from environment", 1);
	assert_int_equal(load("[source \"c\"]\ntype = redis\naddress = /run/redis/redis.sock\n"
			      "password_env = OPSCTL_TEST_REDIS_PW\n", "OTHER=1\n", "c", &s, &err), 0);
	assert_string_equal(s.password, "from environment");
	assert_string_equal(s.unix_socket, "/run/redis/redis.sock");
	assert_string_equal(s.display, "redis /run/redis/redis.sock");
	src_settings_release(&s);
	unsetenv("OPSCTL_TEST_REDIS_PW");
	ops_error_release(&err);
}

static void test_redis_errors(void **state)
{
	(void)state;
	expect_error("[source \"y\"]\ntype = redis\n", NULL, OPS_EXIT_CONFIG, "no [source \"x\"] in 't.conf'");
	expect_error("[source \"x\"]\naddress = h:1\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf: [source \"x\"] needs type = redis or type = http-snapshot");
	expect_error("[source \"x\"]\ntype = memcached\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:2: unknown source type 'memcached' (expected redis or http-snapshot)");
	expect_error("[source \"x\"]\ntype = redis\naddress = h:99999\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: invalid Redis address 'h:99999' (expected HOST:PORT, [IPv6]:PORT or a socket path)");
	expect_error("[source \"x\"]\ntype = redis\npassword = hunter2\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: a secret does not belong in the config file");
	expect_error("[source \"x\"]\ntype = redis\nadress = h:1\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: unknown key 'adress' for a source of type redis");
	expect_error("[source \"x\"]\ntype = redis\ncollection = k\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: unknown key 'collection' for a source of type redis");
	expect_error("[source \"x\"]\ntype = redis\npassword_env = OPSCTL_TEST_NOT_SET\n", "A=1\n", OPS_EXIT_CONFIG,
		     "t.conf:3: password_env names 'OPSCTL_TEST_NOT_SET', which is set neither in the env file "
		     "nor in the environment");
	expect_error("[source \"x\"]\ntype = redis\npassword_env = not-a-name\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: 'not-a-name' is not a variable name (letters, digits, '_', '.')");
	expect_error("[source \"x\"]\ntype = redis\nusername = app\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: username needs password_env (AUTH USER PASSWORD)");
	expect_error("[source \"x\"]\ntype = redis\nrdb_path = dump.rdb\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: rdb_path 'dump.rdb' is not an absolute path");
	expect_error("[source \"x\"]\ntype = redis\nrestore_check = all\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: unknown restore_check 'all' (expected ping, keys or keys-equal)");
	expect_error("[source \"x\"]\ntype = redis\ntimeout = soon\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: invalid value for 'source.x.timeout': invalid duration 'soon' (expected e.g. 500ms, 30s, 5m, 2h)");
	expect_error("[source \"x\"]\ntype = redis\ntimeout = 0s\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: timeout must be more than 0");
}

/* The name becomes a file name in the set: no '/' and no leading '.'. */
static void test_bad_name(void **state)
{
	struct src_settings s;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(load("[source \"../x\"]\ntype = redis\n", NULL, "../x", &s, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "t.conf: [source \"../x\"]: the name must not contain '/' or start with '.'");
	src_settings_release(&s);
	ops_error_release(&err);
}

static void test_qdrant_preset(void **state)
{
	struct src_settings s;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(load("[source \"knowledge\"]\ntype = http-snapshot\npreset = qdrant\n"
			      "url = http://localhost:6333/\ncollection = knowledge\napi_key_env = QDRANT_API_KEY\n",
			      "QDRANT_API_KEY=k3y\n", "knowledge", &s, &err), 0);
	assert_int_equal(s.type, SRC_HTTP_SNAPSHOT);
	assert_string_equal(s.url, "http://localhost:6333");
	assert_string_equal(s.create_url, "{url}/collections/{collection}/snapshots");
	assert_string_equal(s.download_url, "{url}/collections/{collection}/snapshots/{name}");
	assert_string_equal(s.delete_url, "{url}/collections/{collection}/snapshots/{name}");
	assert_string_equal(s.restore_url, "{url}/collections/{collection}/snapshots/upload?priority=snapshot");
	assert_string_equal(s.create_method, "POST");
	assert_string_equal(s.download_method, "GET");
	assert_string_equal(s.delete_method, "DELETE");
	assert_string_equal(s.restore_method, "POST");
	assert_string_equal(s.name_field, "result.name");
	assert_string_equal(s.checksum_field, "result.checksum");
	assert_string_equal(s.api_key_header, "api-key");
	assert_string_equal(s.api_key, "k3y");
	assert_int_equal(s.restore_upload, SRC_UPLOAD_MULTIPART);
	assert_string_equal(s.restore_field, "snapshot");
	assert_string_equal(s.display, "qdrant http://localhost:6333 collection 'knowledge'");
	src_settings_release(&s);

	/* an explicit key overrides the preset */
	assert_int_equal(load("[source \"k\"]\ntype = http-snapshot\npreset = qdrant\nurl = http://q:6333\n"
			      "collection = c\nrestore = {url}/collections/{collection}/snapshots/upload?priority=replica\n",
			      NULL, "k", &s, &err), 0);
	assert_string_equal(s.restore_url, "{url}/collections/{collection}/snapshots/upload?priority=replica");
	src_settings_release(&s);
	ops_error_release(&err);
}

static void test_generic_templates(void **state)
{
	struct src_settings s;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(load("[source \"es\"]\ntype = http-snapshot\nurl = https://es:9200\n"
			      "create = {url}/_snapshot/backups/{name}?wait_for_completion=true\ncreate_method = PUT\n"
			      "download = {url}/files/{name}.tar\ndelete = {url}/_snapshot/backups/{name}\n"
			      "restore = {url}/upload\nrestore_upload = raw\nrestore_method = PUT\n"
			      "api_key_env = ES_TOKEN\n",
			      "ES_TOKEN=t\n", "es", &s, &err), 0);
	assert_null(s.preset);
	assert_string_equal(s.create_method, "PUT");
	assert_string_equal(s.restore_method, "PUT");
	assert_int_equal(s.restore_upload, SRC_UPLOAD_RAW);
	assert_string_equal(s.api_key_header, "Authorization");
	assert_null(s.checksum_field);
	assert_string_equal(s.display, "http-snapshot https://es:9200");
	src_settings_release(&s);
	ops_error_release(&err);

	expect_error("[source \"x\"]\ntype = http-snapshot\npreset = weaviate\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: unknown preset 'weaviate' (expected qdrant, or no preset and the "
		     "create/download/delete/restore URL templates)");
	expect_error("[source \"x\"]\ntype = http-snapshot\npreset = qdrant\nurl = http://q\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: preset = qdrant needs collection = NAME");
	expect_error("[source \"x\"]\ntype = http-snapshot\npreset = qdrant\ncollection = c\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:3: preset = qdrant needs url = http://HOST:6333");
	expect_error("[source \"x\"]\ntype = http-snapshot\nurl = http://h\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:2: type = http-snapshot needs preset = qdrant or create = URL");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/s\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:2: type = http-snapshot needs download = URL (with {name})");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/s\ndownload = http://h/{snapshot}\n",
		     NULL, OPS_EXIT_CONFIG,
		     "t.conf:4: download: unknown placeholder '{snapshot}' (expected {url}, {collection} or {name})");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = {url}/s\ndownload = http://h/{name}\n",
		     NULL, OPS_EXIT_CONFIG, "t.conf:3: create: '{url}' is used but url is not set");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/{collection}\ndownload = http://h/{name}\n",
		     NULL, OPS_EXIT_CONFIG, "t.conf:3: create: '{collection}' is used but collection is not set");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = ftp://h/s\ndownload = http://h/{name}\n",
		     NULL, OPS_EXIT_CONFIG, "t.conf:3: create: 'ftp://h/s' is not an http:// or https:// URL");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/s\ndownload = http://h/{name}\n"
		     "create_method = FETCH\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:5: unknown method 'FETCH' (expected GET, POST, PUT, DELETE or PATCH)");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/s\ndownload = http://h/{name}\n"
		     "restore_upload = form\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:5: unknown restore_upload 'form' (expected multipart or raw)");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/s\ndownload = http://h/{name}\n"
		     "api_key = k\n", NULL, OPS_EXIT_CONFIG, "t.conf:5: a secret does not belong in the config file");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/s\ndownload = http://h/{name}\n"
		     "address = h:1\n", NULL, OPS_EXIT_CONFIG,
		     "t.conf:5: unknown key 'address' for a source of type http-snapshot");
	expect_error("[source \"x\"]\ntype = http-snapshot\ncreate = http://h/s\ndownload = http://h/{name}\n"
		     "api_key_header = X-Key: v\n", NULL, OPS_EXIT_CONFIG, "t.conf:5: 'X-Key: v' is not a header name");
}

static void test_template_fill(void **state)
{
	struct src_vars v = { "http://q:6333", "my docs", "snap/1 2.snapshot" };
	struct strbuf sb = STRBUF_INIT;
	struct ops_error err = OPS_ERROR_INIT;
	(void)state;

	assert_int_equal(src_template_fill("{url}/collections/{collection}/snapshots/{name}", &v, 1, &sb, &err), 0);
	assert_string_equal(sb.buf, "http://q:6333/collections/my%20docs/snapshots/snap%2F1%202.snapshot");
	strbuf_reset(&sb);
	/* a JSON body: raw values, braces that are not placeholders stay */
	assert_int_equal(src_template_fill("{\"id\": \"{name}\", \"x\": {}}", &v, 0, &sb, &err), 0);
	assert_string_equal(sb.buf, "{\"id\": \"snap/1 2.snapshot\", \"x\": {}}");
	strbuf_reset(&sb);
	assert_int_equal(src_template_fill("no placeholders", &v, 1, &sb, &err), 0);
	assert_string_equal(sb.buf, "no placeholders");
	strbuf_reset(&sb);
	assert_int_equal(src_template_fill("{url}/{Name}/{", &v, 1, &sb, &err), 0);
	assert_string_equal(sb.buf, "http://q:6333/{Name}/{");
	strbuf_reset(&sb);
	assert_int_equal(src_template_fill("{url}/{slot}", &v, 1, &sb, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "unknown placeholder '{slot}' (expected {url}, {collection} or {name})");
	strbuf_reset(&sb);
	v.name = NULL;
	assert_int_equal(src_template_fill("{url}/{name}", &v, 1, &sb, &err), -OPS_EXIT_CONFIG);
	assert_string_equal(err.msg.buf, "'{name}' is not known here");
	strbuf_release(&sb);
	ops_error_release(&err);
}

static void test_json_field(void **state)
{
	cJSON *j = cJSON_Parse("{\"result\":{\"name\":\"k-1.snapshot\",\"list\":[{\"n\":\"a\"},{\"n\":\"b\"}]},"
			       "\"a.b\":1}");
	const cJSON *f;
	(void)state;

	f = src_json_field(j, "result.name");
	assert_true(cJSON_IsString(f));
	assert_string_equal(f->valuestring, "k-1.snapshot");
	f = src_json_field(j, "/result/name");
	assert_string_equal(f->valuestring, "k-1.snapshot");
	f = src_json_field(j, "result.list.1.n");
	assert_string_equal(f->valuestring, "b");
	assert_null(src_json_field(j, "result.list.2.n"));
	assert_null(src_json_field(j, "result.list.x"));
	assert_null(src_json_field(j, "result.missing"));
	assert_null(src_json_field(j, "result.name.deeper"));
	cJSON_Delete(j);
}

static void test_redis_address(void **state)
{
	char *host = NULL, *sock = NULL;
	int port = 0;
	(void)state;

	assert_int_equal(src_parse_redis_address("localhost", &host, &port, &sock), 0);
	assert_string_equal(host, "localhost");
	assert_int_equal(port, 6379);
	free(host);
	assert_int_equal(src_parse_redis_address("[::1]:7000", &host, &port, &sock), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 7000);
	assert_null(sock);
	free(host);
	assert_int_equal(src_parse_redis_address("unix:/tmp/r.sock", &host, &port, &sock), 0);
	assert_null(host);
	assert_string_equal(sock, "/tmp/r.sock");
	free(sock);
	assert_int_equal(src_parse_redis_address("::1:6379", &host, &port, &sock), -1);
	assert_int_equal(src_parse_redis_address("h:", &host, &port, &sock), -1);
	assert_int_equal(src_parse_redis_address(":6379", &host, &port, &sock), -1);
	assert_int_equal(src_parse_redis_address("h:0", &host, &port, &sock), -1);
	assert_int_equal(src_parse_redis_address("[::1", &host, &port, &sock), -1);
	assert_int_equal(src_parse_redis_address("", &host, &port, &sock), -1);
	assert_null(host);
	assert_null(sock);
}

static void test_entry_round_trip(void **state)
{
	struct src_entry e, back;
	struct ops_error err = OPS_ERROR_INIT;
	cJSON *j, *bad;
	(void)state;

	src_entry_init(&e);
	src_entry_init(&back);
	e.name = strdup("cache");
	e.type = strdup("redis");
	e.file = strdup("sources/cache.rdb");
	e.size = 12345;
	memset(e.sha256, 'a', 64);
	e.details = cJSON_CreateObject();
	cJSON_AddNumberToObject(e.details, "keys", 42);
	j = src_entry_json(&e);
	assert_int_equal(src_entry_parse(j, &back, &err), 0);
	assert_string_equal(back.name, "cache");
	assert_string_equal(back.type, "redis");
	assert_string_equal(back.file, "sources/cache.rdb");
	assert_int_equal(back.size, 12345);
	assert_string_equal(back.sha256, e.sha256);
	assert_int_equal(cJSON_GetObjectItem(back.details, "keys")->valueint, 42);
	src_entry_release(&back);

	bad = cJSON_Duplicate(j, 1);
	cJSON_ReplaceItemInObject(bad, "file", cJSON_CreateString("sources/../../etc/passwd"));
	assert_int_equal(src_entry_parse(bad, &back, &err), -OPS_EXIT_INTEGRITY);
	assert_string_equal(err.msg.buf, "source 'cache': bad file name 'sources/../../etc/passwd'");
	cJSON_ReplaceItemInObject(bad, "file", cJSON_CreateString("db.dump"));
	assert_int_equal(src_entry_parse(bad, &back, &err), -OPS_EXIT_INTEGRITY);
	cJSON_ReplaceItemInObject(bad, "file", cJSON_CreateString("sources/cache.rdb"));
	cJSON_ReplaceItemInObject(bad, "sha256", cJSON_CreateString("xyz"));
	assert_int_equal(src_entry_parse(bad, &back, &err), -OPS_EXIT_INTEGRITY);
	assert_string_equal(err.msg.buf, "source 'cache': sha256 is not 64 hex digits");
	cJSON_DeleteItemFromObject(bad, "details");
	assert_int_equal(src_entry_parse(bad, &back, &err), -OPS_EXIT_INTEGRITY);
	assert_string_equal(err.msg.buf, "a source entry needs name, type, file, size, sha256 and details");
	cJSON_Delete(bad);
	cJSON_Delete(j);
	src_entry_release(&e);
	src_entry_release(&back);
	ops_error_release(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redis_defaults),
		cmocka_unit_test(test_redis_errors),
		cmocka_unit_test(test_bad_name),
		cmocka_unit_test(test_qdrant_preset),
		cmocka_unit_test(test_generic_templates),
		cmocka_unit_test(test_template_fill),
		cmocka_unit_test(test_json_field),
		cmocka_unit_test(test_redis_address),
		cmocka_unit_test(test_entry_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
