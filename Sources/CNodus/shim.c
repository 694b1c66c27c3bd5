#include "nodus.h"
