/* Prints the core's op descriptor table (redpat/describe.h) as JSON on stdout, for
 * scripts/gen_matrix_doc.py (tests/matrix/README.md's op table) and anyone else who wants
 * the table as data. Integers are printed exactly (bounds reach 2^63 - 1).
 *
 *     {"ops": [{"name": "lock.acquire", "verb": "acquire", "kind": "lock", "makes": null,
 *               "io": true, "shape": "record", "doc": "...",
 *               "args": [{"name": "wait", "type": "ms", "required": false, "self": false,
 *                         "default": 0, "min": 0, "max": 9223372036854775807, "doc": "..."}],
 *               "fields": [{"name": "acquired", "type": "bool", "doc": "..."}],
 *               "long_lived": false, "message_fields": []}]}
 *
 * An argument has "item_type" (and "min_item"/"max_item") when it is a list, "kind" when
 * it is a handle (or a list of them), "choices" when it is an enum, "default" when it is an
 * optional int / ms / bool / enum (a bool as true/false, an enum as its choice's name).
 * "message_fields" are the fields of the messages an op EMITs (a long-lived op's), in the
 * same form as "fields". */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <redpat/redpat.h>

static void str(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void key(const char *k, int first)
{
    printf("%s", first ? "" : ", ");
    str(k);
    printf(": ");
}

static void kind(rp_kind k)
{
    if (k == RP_KIND_NONE)
        printf("null");
    else
        str(rp_kind_name(k));
}

static const char *shape_name(rp_result_shape s)
{
    switch (s) {
    case RP_RESULT_NONE: return "none";
    case RP_RESULT_RECORD: return "record";
    case RP_RESULT_LIST: return "list";
    }
    return "unknown";
}

static int has_bounds(rp_type t)
{
    return t == RP_TYPE_INT || t == RP_TYPE_MS || t == RP_TYPE_FLOAT || t == RP_TYPE_BYTES ||
           t == RP_TYPE_LIST;
}

static void arg(const rp_arg_desc *a)
{
    int is_handle = a->type == RP_TYPE_HANDLE ||
                    (a->type == RP_TYPE_LIST && a->item_type == RP_TYPE_HANDLE);
    int required = (a->flags & RP_ARG_REQUIRED) != 0;
    key("name", 1);
    str(a->name);
    key("type", 0);
    str(rp_type_name(a->type));
    if (a->type == RP_TYPE_LIST) {
        key("item_type", 0);
        str(rp_type_name(a->item_type));
    }
    if (is_handle) {
        key("kind", 0);
        kind(a->kind);
    }
    key("required", 0);
    printf("%s", required ? "true" : "false");
    key("self", 0);
    printf("%s", a->flags & RP_ARG_SELF ? "true" : "false");
    if (!required && (a->type == RP_TYPE_INT || a->type == RP_TYPE_MS)) {
        key("default", 0);
        printf("%" PRId64, a->def);
    } else if (!required && a->type == RP_TYPE_BOOL) {
        key("default", 0);
        printf("%s", a->def ? "true" : "false");
    } else if (!required && a->type == RP_TYPE_ENUM && a->choices) {
        int64_t i;
        for (i = 0; a->choices[i] && i < a->def; i++)
            ;
        key("default", 0);
        if (a->choices[i])
            str(a->choices[i]);
        else
            printf("null");
    }
    if (has_bounds(a->type)) {
        key("min", 0);
        printf("%" PRId64, a->min);
        key("max", 0);
        printf("%" PRId64, a->max);
    }
    if (a->type == RP_TYPE_LIST && has_bounds(a->item_type)) {
        key("min_item", 0);
        printf("%" PRId64, a->min_item);
        key("max_item", 0);
        printf("%" PRId64, a->max_item);
    }
    if (a->type == RP_TYPE_ENUM || (a->type == RP_TYPE_LIST && a->item_type == RP_TYPE_ENUM)) {
        size_t i;
        key("choices", 0);
        printf("[");
        for (i = 0; a->choices && a->choices[i]; i++) {
            printf("%s", i ? ", " : "");
            str(a->choices[i]);
        }
        printf("]");
    }
    key("doc", 0);
    str(a->doc);
}

static void field(const rp_field_desc *f)
{
    key("name", 1);
    str(f->name);
    key("type", 0);
    str(rp_type_name(f->type));
    key("doc", 0);
    str(f->doc);
}

int main(void)
{
    size_t n = rp_desc_count(), i, k;
    printf("{\"ops\": [");
    for (i = 0; i < n; i++) {
        const rp_op_desc *d = rp_desc_at(i);
        printf("%s\n  {", i ? "," : "");
        key("name", 1);
        str(d->name);
        key("verb", 0);
        str(d->verb);
        key("kind", 0);
        kind(d->kind);
        key("makes", 0);
        kind(d->makes);
        key("io", 0);
        printf("%s", d->io ? "true" : "false");
        key("shape", 0);
        str(shape_name(d->shape));
        key("doc", 0);
        str(d->doc);
        key("args", 0);
        printf("[");
        for (k = 0; k < d->nargs; k++) {
            printf("%s\n    {", k ? "," : "");
            arg(&d->args[k]);
            printf("}");
        }
        printf("]");
        key("fields", 0);
        printf("[");
        for (k = 0; k < d->nfields; k++) {
            printf("%s\n    {", k ? "," : "");
            field(&d->fields[k]);
            printf("}");
        }
        printf("]");
        key("long_lived", 0);
        printf("%s", d->long_lived ? "true" : "false");
        key("message_fields", 0);
        printf("[");
        for (k = 0; k < d->nmessage_fields; k++) {
            printf("%s\n    {", k ? "," : "");
            field(&d->message_fields[k]);
            printf("}");
        }
        printf("]}");
    }
    printf("\n]}\n");
    return ferror(stdout) ? 1 : 0;
}
