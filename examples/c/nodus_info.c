/*
 * nodus_info: loads a model folder and prints its kind and config.json.
 *
 *     nodus_info MODEL_DIR
 *
 * Exit codes: 0 success, 1 the model could not be loaded, 2 usage error.
 */
#include <stdio.h>

#include "nodus.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }

    nodus_model_params params;
    nodus_model_params_init(&params);
    params.threads = 1; /* loading only: one thread is plenty */

    nodus_model *model = NULL;
    nodus_status status = nodus_model_load(argv[1], &params, &model);
    if (status != NODUS_OK) {
        fprintf(stderr, "error (%s): %s\n", nodus_status_name(status), nodus_last_error());
        return 1;
    }

    const char *kind = nodus_model_kind_name(nodus_model_get_kind(model));
    printf("path:    %s\n", argv[1]);
    printf("kind:    %s\n", kind != NULL ? kind : "unknown");
    printf("config:  %s\n", nodus_model_config_json(model)); /* owned by the model */
    printf("library: nodus %s\n", nodus_version());

    nodus_model_free(model);
    return 0;
}
