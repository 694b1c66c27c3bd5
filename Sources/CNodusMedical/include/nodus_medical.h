/*
 * nodus_medical.h: the CLI's medical file formats (DICOM through DCMTK, NIfTI-1
 * through niftilib, grayscale PNG through libpng) behind a plain C interface.
 *
 * Only the `nodus` CLI links this; libnodus.so has no DICOM or NIfTI dependency
 * (a PACS host brings its own DICOM stack and hands Nodus pixels).
 *
 * Every fallible call returns 0 on success, or -1 with a message naming the file
 * and what was wrong in `error` (always NUL-terminated, truncated to
 * `error_size`). Every write is atomic: the file is written under a temporary
 * name in the same folder, flushed to disk, checked, then renamed; on failure
 * the temporary file is removed and nothing exists under the output name.
 */
#ifndef NODUS_MEDICAL_H
#define NODUS_MEDICAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_MEDICAL_MAX_WINDOWS 8

/* One grayscale DICOM frame: the stored pixel values as the file holds them
 * (bits outside Bits Stored removed, signed values sign-extended) and the
 * attributes that map them to modality values and to display. */
typedef struct nodus_medical_dicom_image {
    int32_t width, height;
    int32_t bits_allocated;      /* 8 or 16 */
    int32_t bits_stored;         /* 1...bits_allocated */
    int32_t high_bit;
    int32_t is_signed;           /* Pixel Representation 1 */
    int32_t is_monochrome1;      /* 1: MONOCHROME1 (low values white), 0: MONOCHROME2 */
    double rescale_slope;        /* 1 when absent */
    double rescale_intercept;    /* 0 when absent */
    int32_t window_count;        /* Window Center / Width pairs, at most NODUS_MEDICAL_MAX_WINDOWS */
    double window_centers[NODUS_MEDICAL_MAX_WINDOWS];
    double window_widths[NODUS_MEDICAL_MAX_WINDOWS];
    char voi_lut_function[24];   /* "LINEAR" (default), "LINEAR_EXACT" or "SIGMOID" */
    int32_t voi_lut_entries;     /* first item of the VOI LUT Sequence; 0 when absent */
    int32_t voi_lut_first_mapped;
    int32_t voi_lut_bits;
    uint16_t *voi_lut_data;      /* voi_lut_entries values; owned, freed by nodus_medical_dicom_image_release */
    double pixel_spacing[2];     /* row, column spacing in mm (Pixel Spacing, else Imager Pixel Spacing); 0 when absent */
    double slice_thickness;      /* mm; 0 when absent */
    char modality[17];
    int32_t *stored_values;      /* width * height, row-major; owned */
} nodus_medical_dicom_image;

/* Reads the single grayscale frame of a DICOM file (MONOCHROME1 or 2, 8 or 16
 * bits allocated). Compressed transfer syntaxes are decoded when DCMTK can
 * (JPEG baseline/extended/lossless, JPEG-LS, RLE); any other, a colour image,
 * several frames or a Modality LUT Sequence is refused by name. */
int nodus_medical_dicom_read(const char *path, nodus_medical_dicom_image *image,
                             char *error, size_t error_size);

/* Frees the arrays of an image filled by nodus_medical_dicom_read (NULL-safe,
 * idempotent). */
void nodus_medical_dicom_image_release(nodus_medical_dicom_image *image);

/* What a derived image says about itself. */
typedef struct nodus_medical_derivation {
    const char *image_comments;          /* ImageComments (0020,4000) */
    const char *derivation_description;  /* DerivationDescription (0008,2111) */
    const char *series_description;      /* SeriesDescription (0008,103E); NULL keeps the source's */
    int32_t series_number;               /* SeriesNumber (0020,0011); negative keeps the source's */
} nodus_medical_derivation;

/* Writes a derived image of `source_path` to `output_path`: the source's
 * dataset (patient, study, equipment and modality modules) with new pixel
 * values, ImageType DERIVED\SECONDARY (values 3 and on kept), new SOP Instance
 * and Series Instance UIDs, Source Image Sequence and Referenced Image Sequence
 * pointing at the source, the derivation's comments, BurnedInAnnotation NO,
 * private and overlay elements dropped; same size, bit depth, signedness and
 * photometric interpretation as the source, uncompressed (Explicit VR Little
 * Endian). `stored_values` (width * height) must fit the source's Bits Stored.
 * The new SOP Instance UID is copied to `sop_instance_uid` (65 bytes) if not NULL. */
int nodus_medical_dicom_write_derived(const char *source_path, const char *output_path,
                                      const int32_t *stored_values, int32_t width, int32_t height,
                                      const nodus_medical_derivation *derivation,
                                      char *sop_instance_uid, char *error, size_t error_size);

/* A NIfTI volume: values[((c * nz + k) * ny + j) * nx + i] (x fastest). */
typedef struct nodus_medical_volume {
    int64_t nx, ny, nz, channels;  /* NIfTI dim[1..4]; channels is the 4th dimension (1 for 3-D) */
    double affine[16];             /* voxel (i, j, k) to world (RAS mm), row-major 4x4 */
    double spacing[3];             /* pixdim[1..3] */
    float *values;                 /* owned, freed by nodus_medical_volume_release */
} nodus_medical_volume;

/* NIfTI data types the writer can store. */
typedef enum nodus_medical_nifti_type {
    NODUS_MEDICAL_NIFTI_INT16 = 4,    /* NIFTI_TYPE_INT16: values rounded, must fit */
    NODUS_MEDICAL_NIFTI_FLOAT32 = 16, /* NIFTI_TYPE_FLOAT32 */
} nodus_medical_nifti_type;

/* Writes a NIfTI-1 file (.nii or .nii.gz by the output name) through niftilib:
 * dims from `volume`, sform and qform from `volume->affine` (code 1, scanner
 * anatomical), pixdim from the affine's column lengths, `description` in
 * `descrip` (at most 79 characters). The written file is read back and
 * compared before it is renamed into place. */
int nodus_medical_nifti_write(const char *path, const nodus_medical_volume *volume,
                              nodus_medical_nifti_type type, const char *description,
                              char *error, size_t error_size);

/* Reads a NIfTI-1 file (.nii, .nii.gz, .hdr/.img; NIfTI-2 is not read) of 1 to 4
 * dimensions and any real data type as float32 with scl_slope / scl_inter
 * applied. The affine is the sform if set, else the qform, else pixdim
 * scaling. */
int nodus_medical_nifti_read(const char *path, nodus_medical_volume *volume,
                             char *error, size_t error_size);

void nodus_medical_volume_release(nodus_medical_volume *volume);

/* A grayscale PNG: samples as the file holds them (no gamma or other transform). */
typedef struct nodus_medical_png_image {
    int32_t width, height;
    int32_t bit_depth;          /* 8 or 16 (1, 2 and 4-bit gray are widened to 8) */
    int32_t significant_bits;   /* the sBIT chunk's gray bits, else bit_depth */
    uint16_t *samples;          /* width * height, row-major; owned */
} nodus_medical_png_image;

/* Reads a gray PNG; colour, palette and alpha PNGs are refused by name. */
int nodus_medical_png_read(const char *path, nodus_medical_png_image *image,
                           char *error, size_t error_size);

void nodus_medical_png_image_release(nodus_medical_png_image *image);

/* Writes an 8- or 16-bit gray PNG; samples must fit `bit_depth`. */
int nodus_medical_png_write(const char *path, const uint16_t *samples, int32_t width, int32_t height,
                            int32_t bit_depth, char *error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif
