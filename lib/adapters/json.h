/* Small cJSON helpers the engines and commands share. */
#ifndef OPSCTL_JSON_H
#define OPSCTL_JSON_H

#include <cjson/cJSON.h>

/* obj[key] = value, or null when value is NULL (an existing key is replaced). */
void json_set_str(cJSON *obj, const char *key, const char *value);
/* obj[key] when it is a string, else NULL. */
const char *json_get_str(const cJSON *obj, const char *key);
/* Appends a formatted string to the array arr (a plan's steps). */
void json_add_fmt(cJSON *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
