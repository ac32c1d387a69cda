/*
** test_slow_powercut.c — test_powercut.c with 1,000 cuts (labelled slow:
** ctest -L slow). synchronous = full: no acknowledged event lost.
*/
#define PC_CUTS 1000
#include "test_powercut.c"
