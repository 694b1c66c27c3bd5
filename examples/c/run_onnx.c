/*
 * run_onnx: loads an ONNX export, lists its inputs and outputs, feeds every
 * input a deterministic ramp (ones for integer inputs, the dynamic axes at 1)
 * and prints each output's shape and checksum, through nodus_model_forward_all.
 *
 *     run_onnx MODEL.onnx
 *
 * Exit codes: 0 success, 1 a call failed, 2 usage error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "nodus.h"

static int fail(const char *what, nodus_status status) {
    fprintf(stderr, "%s failed (%s): %s\n", what, nodus_status_name(status), nodus_last_error());
    return 1;
}

static void print_info(const char *role, const nodus_tensor_info *info) {
    printf("%s %s: %s [", role, info->name, nodus_dtype_name(info->dtype));
    for (int32_t axis = 0; axis < info->ndim; axis++) {
        if (info->shape[axis] < 0) printf("%s?", axis ? ", " : "");
        else printf("%s%lld", axis ? ", " : "", (long long)info->shape[axis]);
    }
    printf("]\n");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
        return 2;
    }
    nodus_model_params params;
    nodus_model_params_init(&params);
    params.threads = 1;
    nodus_model *model = NULL;
    nodus_status status = nodus_model_load(argv[1], &params, &model);
    if (status != NODUS_OK) return fail("nodus_model_load", status);

    size_t input_count = nodus_model_input_count(model), output_count = nodus_model_output_count(model);
    nodus_tensor *inputs = calloc(input_count, sizeof *inputs);
    nodus_tensor *outputs = calloc(output_count, sizeof *outputs);
    void **buffers = calloc(input_count + output_count, sizeof *buffers);
    int result = 1;
    if ((input_count && !inputs) || !outputs || !buffers) goto done;

    for (size_t index = 0; index < input_count; index++) {
        nodus_tensor_info info;
        if ((status = nodus_model_input_info(model, index, &info)) != NODUS_OK) {
            result = fail("nodus_model_input_info", status);
            goto done;
        }
        print_info("input", &info);
        nodus_tensor *tensor = &inputs[index];
        tensor->name = info.name; /* owned by the model */
        tensor->dtype = info.dtype;
        tensor->ndim = info.ndim;
        size_t count = 1;
        for (int32_t axis = 0; axis < info.ndim; axis++) {
            tensor->shape[axis] = info.shape[axis] < 0 ? 1 : info.shape[axis];
            count *= (size_t)tensor->shape[axis];
        }
        tensor->size_bytes = count * nodus_dtype_size(info.dtype);
        buffers[index] = tensor->data = malloc(tensor->size_bytes ? tensor->size_bytes : 1);
        if (!tensor->data) goto done;
        for (size_t element = 0; element < count; element++) {
            if (info.dtype == NODUS_DTYPE_FLOAT32) ((float *)tensor->data)[element] = (float)(element % 17) / 8.0f - 1.0f;
            else if (info.dtype == NODUS_DTYPE_INT64) ((int64_t *)tensor->data)[element] = 1;
            else ((unsigned char *)tensor->data)[element] = 1;
        }
    }
    /* First call: outputs' data NULL, so only shapes and dtypes come back. */
    if ((status = nodus_model_forward_all(model, inputs, input_count, outputs, output_count)) != NODUS_OK) {
        result = fail("nodus_model_forward_all (shapes)", status);
        goto done;
    }
    for (size_t index = 0; index < output_count; index++) {
        buffers[input_count + index] = outputs[index].data = malloc(outputs[index].size_bytes ? outputs[index].size_bytes : 1);
        if (!outputs[index].data) goto done;
    }
    if ((status = nodus_model_forward_all(model, inputs, input_count, outputs, output_count)) != NODUS_OK) {
        result = fail("nodus_model_forward_all", status);
        goto done;
    }
    for (size_t index = 0; index < output_count; index++) {
        nodus_tensor_info info;
        if ((status = nodus_model_output_info(model, index, &info)) != NODUS_OK) {
            result = fail("nodus_model_output_info", status);
            goto done;
        }
        print_info("output", &info);
        size_t count = outputs[index].size_bytes / nodus_dtype_size(outputs[index].dtype);
        double sum = 0;
        for (size_t element = 0; element < count && outputs[index].dtype == NODUS_DTYPE_FLOAT32; element++) {
            sum += ((const float *)outputs[index].data)[element];
        }
        printf("  computed %zu values, sum %.6g\n", count, sum);
    }
    result = 0;
done:
    for (size_t index = 0; index < input_count + output_count; index++) free(buffers ? buffers[index] : NULL);
    free(buffers);
    free(inputs);
    free(outputs);
    nodus_model_free(model);
    return result;
}
