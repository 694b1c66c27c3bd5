// What the DICOM reader and the derived-image writer share: loading a file with
// its pixel data decompressed, and the bit layout of stored pixel values.
#ifndef NODUS_MEDICAL_DICOM_SUPPORT_H
#define NODUS_MEDICAL_DICOM_SUPPORT_H

#include "nodus_medical.h"

#include <dcmtk/dcmdata/dctk.h>

#include <cstddef>
#include <cstdint>

// Loads `path` and decodes its pixel data to Explicit VR Little Endian; -1 with
// a message naming the file and, for a compressed transfer syntax DCMTK cannot
// decode, that syntax.
int medical_load_dicom(const char *path, DcmFileFormat &file, DcmDataset *&dataset, char *error,
                       size_t errorSize);

// The grayscale frame of a loaded dataset (see nodus_medical_dicom_read).
int medical_read_dataset(const char *path, DcmDataset *dataset, nodus_medical_dicom_image *image, char *error,
                         size_t errorSize);

// Stored values sit in bits (highBit - bitsStored + 1) ... highBit of each
// allocated word (PS3.5 8.1.1); the other bits may hold anything (old overlays).
struct MedicalPixelLayout {
    unsigned bitsAllocated, bitsStored, highBit;
    bool isSigned;

    unsigned shift() const { return highBit + 1 - bitsStored; }
    uint32_t mask() const { return bitsStored >= 32 ? 0xffffffffu : (1u << bitsStored) - 1; }
    int32_t minimum() const { return isSigned ? -(1 << (bitsStored - 1)) : 0; }
    int32_t maximum() const { return isSigned ? (1 << (bitsStored - 1)) - 1 : static_cast<int32_t>(mask()); }

    int32_t unpack(uint32_t word) const {
        uint32_t bits = (word >> shift()) & mask();
        if (isSigned && (bits >> (bitsStored - 1)) & 1) return static_cast<int32_t>(bits) - (1 << bitsStored);
        return static_cast<int32_t>(bits);
    }

    uint32_t pack(int32_t value) const { return (static_cast<uint32_t>(value) & mask()) << shift(); }
};

#endif
