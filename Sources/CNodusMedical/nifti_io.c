/* NIfTI-1 through Debian's niftilib (libniftiio + libznz): the volume's
 * geometry goes into both sform and qform, the data into one .nii or .nii.gz
 * file. niftilib does not report write errors, so the written file is read
 * back and compared before it takes the output name. */
#include "nodus_medical.h"
#include "atomic_file.h"

#include <nifti/nifti1_io.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The extension niftilib chooses the file type by; the temporary file keeps it. */
static const char *nifti_extension(const char *path) {
    static const char *extensions[] = {".nii.gz", ".nii"};
    size_t length = strlen(path);
    for (size_t index = 0; index < sizeof extensions / sizeof *extensions; index++) {
        size_t extensionLength = strlen(extensions[index]);
        if (length > extensionLength && strcmp(path + length - extensionLength, extensions[index]) == 0)
            return extensions[index];
    }
    return NULL;
}

static mat44 matrix_from(const double affine[16]) {
    mat44 matrix;
    for (int row = 0; row < 4; row++)
        for (int column = 0; column < 4; column++) matrix.m[row][column] = (float)affine[row * 4 + column];
    return matrix;
}

/* Values converted to the stored type; int16 values are rounded and must fit. */
static void *encode_values(const nodus_medical_volume *volume, nodus_medical_nifti_type type, size_t count,
                           const char *path, char *error, size_t error_size) {
    if (type == NODUS_MEDICAL_NIFTI_FLOAT32) {
        float *values = malloc(sizeof(float) * count);
        if (!values) {
            medical_fail(error, error_size, "cannot write '%s': out of memory", path);
            return NULL;
        }
        memcpy(values, volume->values, sizeof(float) * count);
        return values;
    }
    int16_t *values = malloc(sizeof(int16_t) * count);
    if (!values) {
        medical_fail(error, error_size, "cannot write '%s': out of memory", path);
        return NULL;
    }
    for (size_t index = 0; index < count; index++) {
        float value = rintf(volume->values[index]);
        if (!(value >= INT16_MIN && value <= INT16_MAX)) {
            free(values);
            medical_fail(error, error_size, "cannot write '%s': voxel %zu is %g, which does not fit int16", path, index,
                         (double)volume->values[index]);
            return NULL;
        }
        values[index] = (int16_t)value;
    }
    return values;
}

int nodus_medical_nifti_write(const char *path, const nodus_medical_volume *volume, nodus_medical_nifti_type type,
                              const char *description, char *error, size_t error_size) {
    nifti_set_debug_level(0);
    const char *extension = nifti_extension(path);
    if (!extension) return medical_fail(error, error_size, "cannot write '%s': a NIfTI file must end in .nii or .nii.gz", path);
    if (type != NODUS_MEDICAL_NIFTI_INT16 && type != NODUS_MEDICAL_NIFTI_FLOAT32)
        return medical_fail(error, error_size, "cannot write '%s': unsupported NIfTI data type %d", path, (int)type);
    const int64_t sizes[4] = {volume->nx, volume->ny, volume->nz, volume->channels};
    size_t count = 1;
    for (int axis = 0; axis < 4; axis++) {
        if (sizes[axis] < 1 || sizes[axis] > 32767)  /* NIfTI-1 dims are int16 */
            return medical_fail(error, error_size, "cannot write '%s': dimension %d is %lld (NIfTI-1 needs 1...32767)",
                                path, axis + 1, (long long)sizes[axis]);
        count *= (size_t)sizes[axis];
    }
    for (int index = 0; index < 16; index++) {
        if (!isfinite(volume->affine[index]))
            return medical_fail(error, error_size, "cannot write '%s': the affine has a non-finite entry", path);
    }
    void *data = encode_values(volume, type, count, path, error, error_size);
    if (!data) return -1;

    int dims[8] = {volume->channels > 1 ? 4 : 3, (int)volume->nx, (int)volume->ny, (int)volume->nz,
                   (int)volume->channels, 1, 1, 1};
    nifti_image *image = nifti_make_new_nim(dims, (int)type, 0);
    if (!image) {
        free(data);
        return medical_fail(error, error_size, "cannot write '%s': niftilib could not make the header", path);
    }
    image->data = data;
    char temporary[4096];
    if (medical_temporary_path(path, extension, temporary, sizeof temporary, error, error_size) != 0) {
        nifti_image_free(image);
        return -1;
    }
    if (nifti_set_filenames(image, temporary, 0, 1) != 0) {
        nifti_image_free(image);
        unlink(temporary);
        return medical_fail(error, error_size, "cannot write '%s': niftilib refused the file name", path);
    }
    image->nifti_type = NIFTI_FTYPE_NIFTI1_1;
    image->xyz_units = NIFTI_UNITS_MM;
    image->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    image->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    image->sto_xyz = matrix_from(volume->affine);
    image->sto_ijk = nifti_mat44_inverse(image->sto_xyz);
    float dx, dy, dz;
    nifti_mat44_to_quatern(image->sto_xyz, &image->quatern_b, &image->quatern_c, &image->quatern_d,
                           &image->qoffset_x, &image->qoffset_y, &image->qoffset_z, &dx, &dy, &dz, &image->qfac);
    image->qto_xyz = nifti_quatern_to_mat44(image->quatern_b, image->quatern_c, image->quatern_d, image->qoffset_x,
                                            image->qoffset_y, image->qoffset_z, dx, dy, dz, image->qfac);
    image->qto_ijk = nifti_mat44_inverse(image->qto_xyz);
    image->dx = image->pixdim[1] = dx;
    image->dy = image->pixdim[2] = dy;
    image->dz = image->pixdim[3] = dz;
    image->dt = image->pixdim[4] = 1;
    if (description) snprintf(image->descrip, sizeof image->descrip, "%s", description);
    nifti_image_write(image);

    nifti_image *written = nifti_image_read(temporary, 1);
    int same = written && written->datatype == image->datatype && written->nvox == image->nvox &&
               written->data && memcmp(written->data, image->data, image->nvox * (size_t)image->nbyper) == 0;
    int missing = written == NULL;
    nifti_image_free(written);
    nifti_image_free(image);
    if (!same) {
        unlink(temporary);
        return medical_fail(error, error_size, "cannot write '%s': %s", path,
                            missing ? "the file could not be written completely (is the disk full?)"
                                    : "the written file does not read back the same (is the disk full?)");
    }
    return medical_commit(temporary, path, error, error_size);
}

static int value_as_float(const nifti_image *image, size_t index, float *value) {
    const void *data = image->data;
    switch (image->datatype) {
    case DT_UINT8: *value = ((const uint8_t *)data)[index]; return 1;
    case DT_INT8: *value = ((const int8_t *)data)[index]; return 1;
    case DT_INT16: *value = ((const int16_t *)data)[index]; return 1;
    case DT_UINT16: *value = ((const uint16_t *)data)[index]; return 1;
    case DT_INT32: *value = (float)((const int32_t *)data)[index]; return 1;
    case DT_UINT32: *value = (float)((const uint32_t *)data)[index]; return 1;
    case DT_INT64: *value = (float)((const int64_t *)data)[index]; return 1;
    case DT_UINT64: *value = (float)((const uint64_t *)data)[index]; return 1;
    case DT_FLOAT32: *value = ((const float *)data)[index]; return 1;
    case DT_FLOAT64: *value = (float)((const double *)data)[index]; return 1;
    default: return 0;
    }
}

int nodus_medical_nifti_read(const char *path, nodus_medical_volume *volume, char *error, size_t error_size) {
    memset(volume, 0, sizeof *volume);
    nifti_set_debug_level(0);
    if (access(path, R_OK) != 0) return medical_fail(error, error_size, "cannot read '%s': %s", path, strerror(errno));
    nifti_image *image = nifti_image_read(path, 1);
    if (!image || !image->data) {
        nifti_image_free(image);
        return medical_fail(error, error_size, "cannot read '%s' as NIfTI-1 (not a NIfTI-1 file, or truncated)", path);
    }
    for (int axis = 5; axis <= 7; axis++) {
        if (image->dim[0] >= axis && image->dim[axis] > 1) {
            int dimensions = image->dim[0];
            nifti_image_free(image);
            return medical_fail(error, error_size, "'%s' has %d dimensions; at most 4 are supported", path, dimensions);
        }
    }
    volume->nx = image->nx > 0 ? image->nx : 1;
    volume->ny = image->ny > 0 && image->dim[0] >= 2 ? image->ny : 1;
    volume->nz = image->nz > 0 && image->dim[0] >= 3 ? image->nz : 1;
    volume->channels = image->nt > 0 && image->dim[0] >= 4 ? image->nt : 1;
    size_t count = (size_t)(volume->nx * volume->ny * volume->nz * volume->channels);
    if (count != image->nvox) {
        nifti_image_free(image);
        return medical_fail(error, error_size, "'%s': inconsistent dimensions", path);
    }
    volume->values = malloc(sizeof(float) * (count ? count : 1));
    if (!volume->values) {
        nifti_image_free(image);
        return medical_fail(error, error_size, "cannot read '%s': out of memory", path);
    }
    /* scl_slope 0 means "no scaling" (NIfTI-1 header comment). */
    int scaled = image->scl_slope != 0 && isfinite(image->scl_slope) && isfinite(image->scl_inter);
    for (size_t index = 0; index < count; index++) {
        float value;
        if (!value_as_float(image, index, &value)) {
            const char *name = nifti_datatype_string(image->datatype);
            free(volume->values);
            volume->values = NULL;
            medical_fail(error, error_size, "'%s' has data type %s; only real-valued types are supported", path, name);
            nifti_image_free(image);
            return -1;
        }
        volume->values[index] = scaled ? value * image->scl_slope + image->scl_inter : value;
    }
    mat44 matrix = image->sform_code > 0 ? image->sto_xyz : image->qto_xyz;
    for (int row = 0; row < 4; row++)
        for (int column = 0; column < 4; column++) volume->affine[row * 4 + column] = matrix.m[row][column];
    volume->spacing[0] = image->dx;
    volume->spacing[1] = image->dy;
    volume->spacing[2] = image->dz;
    nifti_image_free(image);
    return 0;
}

void nodus_medical_volume_release(nodus_medical_volume *volume) {
    if (!volume) return;
    free(volume->values);
    volume->values = NULL;
}
