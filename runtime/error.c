/* error.c — status names and message formatting. */
#include "internal.h"

#include <stdio.h>

const char *onyx_status_str(onyx_status code)
{
    switch (code) {
    case ONYX_OK: return "ONYX_OK";
    case ONYX_ERR_NOMEM: return "ONYX_ERR_NOMEM";
    case ONYX_ERR_IO: return "ONYX_ERR_IO";
    case ONYX_ERR_INVALID_MODEL: return "ONYX_ERR_INVALID_MODEL";
    case ONYX_ERR_UNSUPPORTED: return "ONYX_ERR_UNSUPPORTED";
    case ONYX_ERR_INVALID_ARG: return "ONYX_ERR_INVALID_ARG";
    case ONYX_ERR_SHAPE: return "ONYX_ERR_SHAPE";
    case ONYX_ERR_INTERNAL: return "ONYX_ERR_INTERNAL";
    }
    return "ONYX_ERR_UNKNOWN";
}

onyx_status onyx_verr(onyx_error *err, onyx_status code, const char *fmt, va_list ap)
{
    if (err != NULL) {
        err->code = code;
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    }
    return code;
}

onyx_status onyx_err(onyx_error *err, onyx_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    onyx_verr(err, code, fmt, ap);
    va_end(ap);
    return code;
}

const char *onyx_version(void)
{
    return ONYX_VERSION_STRING;
}

int onyx_version_number(void)
{
    return ONYX_VERSION_NUMBER;
}
