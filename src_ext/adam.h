/* The Adam update written in C because `restrict` (which Cython cannot express) tells the compiler that the
   arrays never overlap, and that is what lets it vectorize the loop. */
#ifndef CYCNN_ADAM_H
#define CYCNN_ADAM_H
#include <math.h>
#include "simd.h"

#define CYCNN_IMPL "adam_impl.h"
#include "instantiate.h"
#endif
