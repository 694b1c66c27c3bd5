// Reads one grayscale DICOM frame through DCMTK's dcmdata: the stored values
// exactly as the file holds them, plus the attributes that map them to modality
// values (rescale) and to display (window, VOI LUT, MONOCHROME1). The mapping
// itself is the CLI's (Swift), so PNG, NIfTI and DICOM share one windowing code.
#include "nodus_medical.h"
#include "atomic_file.h"
#include "dicom_support.h"

#include <dcmtk/dcmdata/dctk.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// The first item of the VOI LUT Sequence: descriptor (entries, first mapped, bits) and data.
int readVoiLookupTable(DcmDataset *dataset, const char *path, nodus_medical_dicom_image *image,
                       char *error, size_t errorSize) {
    DcmItem *item = nullptr;
    if (dataset->findAndGetSequenceItem(DCM_VOILUTSequence, item, 0).bad() || !item) return 0;
    Uint16 entries = 0, firstMapped = 0, bits = 0;
    if (item->findAndGetUint16(DCM_LUTDescriptor, entries, 0).bad() ||
        item->findAndGetUint16(DCM_LUTDescriptor, firstMapped, 1).bad() ||
        item->findAndGetUint16(DCM_LUTDescriptor, bits, 2).bad()) {
        return medical_fail(error, errorSize, "'%s': the VOI LUT Sequence has no valid LUT Descriptor", path);
    }
    const long count = entries == 0 ? 65536 : entries;  // PS3.3 C.11.2.1.1: 0 means 2^16
    const Uint16 *words = nullptr;
    unsigned long wordCount = 0;
    DcmElement *element = nullptr;
    if (item->findAndGetElement(DCM_LUTData, element).bad() || !element ||
        element->getUint16Array(const_cast<Uint16 *&>(words)).bad() || !words) {
        return medical_fail(error, errorSize, "'%s': the VOI LUT Sequence has no LUT Data", path);
    }
    wordCount = element->getLength() / 2;
    if (bits < 1 || bits > 16) {
        return medical_fail(error, errorSize, "'%s': the VOI LUT has %u bits per entry (need 1 to 16)", path, bits);
    }
    image->voi_lut_data = static_cast<uint16_t *>(std::malloc(sizeof(uint16_t) * count));
    if (!image->voi_lut_data) return medical_fail(error, errorSize, "cannot read '%s': out of memory", path);
    if (static_cast<long>(wordCount) >= count) {
        std::memcpy(image->voi_lut_data, words, sizeof(uint16_t) * count);
    } else if (bits <= 8 && static_cast<long>(wordCount) * 2 >= count) {
        // 8-bit entries packed two per word, low byte first (the older encoding some writers use).
        for (long index = 0; index < count; index++) {
            image->voi_lut_data[index] = index % 2 == 0 ? (words[index / 2] & 0xff) : (words[index / 2] >> 8);
        }
    } else {
        return medical_fail(error, errorSize, "'%s': the VOI LUT Data has %lu values, its descriptor says %ld",
                            path, wordCount, count);
    }
    image->voi_lut_entries = static_cast<int32_t>(count);
    // The first mapped value is signed when the pixels are (PS3.3 C.11.2.1.1).
    image->voi_lut_first_mapped = image->is_signed ? static_cast<int16_t>(firstMapped) : firstMapped;
    image->voi_lut_bits = bits;
    return 0;
}

void readWindows(DcmDataset *dataset, nodus_medical_dicom_image *image) {
    for (unsigned long index = 0; index < NODUS_MEDICAL_MAX_WINDOWS; index++) {
        Float64 centre = 0, width = 0;
        if (dataset->findAndGetFloat64(DCM_WindowCenter, centre, index).bad() ||
            dataset->findAndGetFloat64(DCM_WindowWidth, width, index).bad()) {
            break;
        }
        image->window_centers[index] = centre;
        image->window_widths[index] = width;
        image->window_count = static_cast<int32_t>(index + 1);
    }
    OFString function;
    const char *chosen = "LINEAR";
    if (dataset->findAndGetOFString(DCM_VOILUTFunction, function).good() && !function.empty()) chosen = function.c_str();
    std::snprintf(image->voi_lut_function, sizeof image->voi_lut_function, "%s", chosen);
}

}  // namespace

extern "C" int nodus_medical_dicom_read(const char *path, nodus_medical_dicom_image *image, char *error,
                                        size_t error_size) {
    std::memset(image, 0, sizeof *image);
    DcmFileFormat file;
    DcmDataset *dataset = nullptr;
    if (medical_load_dicom(path, file, dataset, error, error_size) != 0) return -1;
    return medical_read_dataset(path, dataset, image, error, error_size);
}

int medical_read_dataset(const char *path, DcmDataset *dataset, nodus_medical_dicom_image *image, char *error,
                         size_t error_size) {
    std::memset(image, 0, sizeof *image);

    OFString photometric;
    dataset->findAndGetOFString(DCM_PhotometricInterpretation, photometric);
    Uint16 samplesPerPixel = 1;
    if (dataset->findAndGetUint16(DCM_SamplesPerPixel, samplesPerPixel).bad()) samplesPerPixel = 1;
    if (samplesPerPixel != 1 || (photometric != "MONOCHROME1" && photometric != "MONOCHROME2")) {
        return medical_fail(error, error_size,
                            "'%s' is a colour image (Photometric Interpretation %s, %u samples per pixel); "
                            "only grayscale MONOCHROME1 and MONOCHROME2 images are supported",
                            path, photometric.empty() ? "missing" : photometric.c_str(), samplesPerPixel);
    }
    Sint32 frames = 1;
    if (dataset->findAndGetSint32(DCM_NumberOfFrames, frames).good() && frames > 1) {
        return medical_fail(error, error_size, "'%s' has %d frames; only single-frame images are supported", path,
                            static_cast<int>(frames));
    }
    if (dataset->tagExists(DCM_ModalityLUTSequence)) {
        return medical_fail(error, error_size,
                            "'%s' has a Modality LUT Sequence, which is not supported (only Rescale Slope and Intercept)",
                            path);
    }
    Uint16 rows = 0, columns = 0, bitsAllocated = 0, bitsStored = 0, highBit = 0, representation = 0;
    if (dataset->findAndGetUint16(DCM_Rows, rows).bad() || dataset->findAndGetUint16(DCM_Columns, columns).bad() ||
        dataset->findAndGetUint16(DCM_BitsAllocated, bitsAllocated).bad() || rows == 0 || columns == 0) {
        return medical_fail(error, error_size, "'%s' has no image (Rows, Columns or Bits Allocated missing)", path);
    }
    if (dataset->findAndGetUint16(DCM_BitsStored, bitsStored).bad()) bitsStored = bitsAllocated;
    if (dataset->findAndGetUint16(DCM_HighBit, highBit).bad()) highBit = bitsStored - 1;
    dataset->findAndGetUint16(DCM_PixelRepresentation, representation);
    if (bitsAllocated != 8 && bitsAllocated != 16) {
        return medical_fail(error, error_size, "'%s' has %u bits allocated per pixel; only 8 and 16 are supported",
                            path, bitsAllocated);
    }
    if (bitsStored < 1 || bitsStored > bitsAllocated || highBit < bitsStored - 1 || highBit >= bitsAllocated) {
        return medical_fail(error, error_size, "'%s' has inconsistent Bits Stored %u / High Bit %u for %u bits allocated",
                            path, bitsStored, highBit, bitsAllocated);
    }
    const size_t count = static_cast<size_t>(rows) * columns;
    const Uint8 *bytes = nullptr;
    const Uint16 *words = nullptr;
    unsigned long length = 0;
    OFCondition status = bitsAllocated == 8 ? dataset->findAndGetUint8Array(DCM_PixelData, bytes, &length)
                                            : dataset->findAndGetUint16Array(DCM_PixelData, words, &length);
    if (status.bad() || (bitsAllocated == 8 ? !bytes : !words)) {
        return medical_fail(error, error_size, "'%s' has no readable Pixel Data: %s", path, status.text());
    }
    // findAndGet*Array reports the number of values for 16-bit data, bytes for 8-bit.
    if (length < count) {
        return medical_fail(error, error_size, "'%s': Pixel Data holds %lu values, %ux%u needs %zu", path, length,
                            columns, rows, count);
    }

    image->width = columns;
    image->height = rows;
    image->bits_allocated = bitsAllocated;
    image->bits_stored = bitsStored;
    image->high_bit = highBit;
    image->is_signed = representation == 1;
    image->is_monochrome1 = photometric == "MONOCHROME1";
    // DCMTK's findAndGet* zero their output when the element is missing.
    Float64 slope = 1, intercept = 0;
    image->rescale_slope = dataset->findAndGetFloat64(DCM_RescaleSlope, slope).good() ? slope : 1;
    image->rescale_intercept = dataset->findAndGetFloat64(DCM_RescaleIntercept, intercept).good() ? intercept : 0;
    if (image->rescale_slope == 0) {
        return medical_fail(error, error_size, "'%s' has Rescale Slope 0", path);
    }
    readWindows(dataset, image);
    if (dataset->findAndGetFloat64(DCM_PixelSpacing, image->pixel_spacing[0], 0).bad() ||
        dataset->findAndGetFloat64(DCM_PixelSpacing, image->pixel_spacing[1], 1).bad()) {
        image->pixel_spacing[0] = image->pixel_spacing[1] = 0;
        if (dataset->findAndGetFloat64(DCM_ImagerPixelSpacing, image->pixel_spacing[0], 0).bad() ||
            dataset->findAndGetFloat64(DCM_ImagerPixelSpacing, image->pixel_spacing[1], 1).bad()) {
            image->pixel_spacing[0] = image->pixel_spacing[1] = 0;
        }
    }
    Float64 thickness = 0;
    if (dataset->findAndGetFloat64(DCM_SliceThickness, thickness).good()) image->slice_thickness = thickness;
    OFString modality;
    dataset->findAndGetOFString(DCM_Modality, modality);
    std::snprintf(image->modality, sizeof image->modality, "%s", modality.c_str());

    if (readVoiLookupTable(dataset, path, image, error, error_size) != 0) {
        nodus_medical_dicom_image_release(image);
        return -1;
    }
    image->stored_values = static_cast<int32_t *>(std::malloc(sizeof(int32_t) * count));
    if (!image->stored_values) {
        nodus_medical_dicom_image_release(image);
        return medical_fail(error, error_size, "cannot read '%s': out of memory", path);
    }
    const MedicalPixelLayout layout{bitsAllocated, bitsStored, highBit, representation == 1};
    for (size_t index = 0; index < count; index++) {
        image->stored_values[index] = layout.unpack(bitsAllocated == 8 ? bytes[index] : words[index]);
    }
    return 0;
}

extern "C" void nodus_medical_dicom_image_release(nodus_medical_dicom_image *image) {
    if (!image) return;
    std::free(image->voi_lut_data);
    std::free(image->stored_values);
    image->voi_lut_data = nullptr;
    image->stored_values = nullptr;
}
