/*
** fuzz_alertmanager.c — libFuzzer target for normalize_alertmanager() with a fixed config of two
** targets; the checks are in fuzz_alert_common.h.
*/
#include "fuzz_alert_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_alert_parser(normalize_alertmanager, data, size);
}
