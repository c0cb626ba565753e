/* The bad-names and depth tests again with a configured depth limit of 8:
   DIAG_MAX_DEPTH is honoured, deeper polls fold into the 8th frame. */
#define DIAG_MAX_DEPTH 8
#include "test_names_depth.c"
