/* The C kernels Swift sees: one header per kernel family. */
#include "nodus_activation.h"
#include "nodus_attention.h"
#include "nodus_gemm.h"
#include "nodus_gemm_bf16.h"
#include "nodus_kernels.h"
#include "nodus_layout.h"
#include "nodus_statistics.h"
#include "nodus_winograd.h"
