// Writes a derived image: the source's dataset, so its IOD's modules (patient,
// study, equipment, modality-specific) stay complete, with new pixels and the
// attributes that say what it is (PS3.3 C.7.6.1: Image Type, Derivation
// Description, Source Image Sequence) and that its content is synthetic.
#include "nodus_medical.h"
#include "atomic_file.h"
#include "dicom_support.h"

#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/ofstd/ofdatime.h>

#include <cstring>
#include <string>
#include <vector>

namespace {

// Private elements and overlays describe the source's pixels or its vendor's
// processing, not ours; icons and signatures would be wrong for the new pixels.
void dropElementsThatDescribeTheSourcePixels(DcmDataset *dataset) {
    for (unsigned long index = dataset->card(); index-- > 0;) {
        DcmElement *element = dataset->getElement(index);
        const DcmTag &tag = element->getTag();
        const Uint16 group = tag.getGroup();
        if (tag.isPrivate() || (group >= 0x6000 && group <= 0x60ff)) delete dataset->remove(element);
    }
    const DcmTagKey stale[] = {DCM_IconImageSequence, DCM_DigitalSignaturesSequence, DCM_MACParametersSequence,
                               DCM_SmallestImagePixelValue, DCM_LargestImagePixelValue,
                               DCM_SourceImageSequence, DCM_ReferencedImageSequence, DCM_DerivationCodeSequence,
                               DCM_NumberOfFrames, DCM_ContentQualification};
    for (const DcmTagKey &key : stale) dataset->findAndDeleteElement(key);
}

// DERIVED\SECONDARY in values 1 and 2; the IOD-specific values from 3 on (CT's
// AXIAL, for example) are kept, since the image is still of that kind.
std::string derivedImageType(DcmDataset *dataset) {
    std::string result = "DERIVED\\SECONDARY";
    OFString value;
    for (unsigned long index = 2; dataset->findAndGetOFString(DCM_ImageType, value, index).good(); index++) {
        result += "\\" + std::string(value.c_str());
    }
    return result;
}

// One reference item (SOP Class and Instance) with its purpose (CID 7202).
OFCondition addSourceReference(DcmDataset *dataset, const DcmTagKey &sequence, const OFString &classUID,
                               const OFString &instanceUID) {
    DcmItem *item = nullptr;
    OFCondition status = dataset->findOrCreateSequenceItem(sequence, item, -2);
    if (status.good()) status = item->putAndInsertString(DCM_ReferencedSOPClassUID, classUID.c_str());
    if (status.good()) status = item->putAndInsertString(DCM_ReferencedSOPInstanceUID, instanceUID.c_str());
    DcmItem *purpose = nullptr;
    if (status.good()) status = item->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, -2);
    if (status.good()) status = purpose->putAndInsertString(DCM_CodeValue, "121322");
    if (status.good()) status = purpose->putAndInsertString(DCM_CodingSchemeDesignator, "DCM");
    if (status.good()) {
        status = purpose->putAndInsertString(DCM_CodeMeaning, "Source image for image processing operation");
    }
    return status;
}

// The whole file as Explicit VR Little Endian bytes, so the caller writes it
// with checked POSIX calls (DCMTK 3.6.7's saveFile ignores fclose errors: a
// full disk could pass unnoticed).
OFCondition encode(DcmFileFormat &file, std::vector<unsigned char> &bytes) {
    std::vector<unsigned char> chunk(1 << 20);
    DcmOutputBufferStream stream(chunk.data(), chunk.size());
    file.transferInit();
    OFCondition status = EC_Normal;
    bool written = false;
    while (true) {
        if (!written) {
            // EWM_updateMeta: the meta header takes the new SOP Instance UID.
            status = file.write(stream, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr, EGL_recalcGL,
                                EPD_noChange, 0, 0, 0, EWM_updateMeta);
            if (status == EC_Normal) {
                written = true;
                stream.flush();
            } else if (status != EC_StreamNotifyClient) {
                break;
            }
        }
        void *data = nullptr;
        offile_off_t length = 0;
        stream.flushBuffer(data, length);
        const unsigned char *start = static_cast<const unsigned char *>(data);
        bytes.insert(bytes.end(), start, start + length);
        if (written && stream.isFlushed()) break;
    }
    file.transferEnd();
    return written ? EC_Normal : status;
}

}  // namespace

extern "C" int nodus_medical_dicom_write_derived(const char *source_path, const char *output_path,
                                                 const int32_t *stored_values, int32_t width, int32_t height,
                                                 const nodus_medical_derivation *derivation,
                                                 char *sop_instance_uid, char *error, size_t error_size) {
    DcmFileFormat file;
    DcmDataset *dataset = nullptr;
    if (medical_load_dicom(source_path, file, dataset, error, error_size) != 0) return -1;
    nodus_medical_dicom_image source;
    if (medical_read_dataset(source_path, dataset, &source, error, error_size) != 0) return -1;
    nodus_medical_dicom_image_release(&source);
    if (width != source.width || height != source.height) {
        return medical_fail(error, error_size, "cannot write '%s': the image is %dx%d, its source '%s' is %dx%d",
                            output_path, width, height, source_path, source.width, source.height);
    }
    const MedicalPixelLayout layout{static_cast<unsigned>(source.bits_allocated),
                                    static_cast<unsigned>(source.bits_stored), static_cast<unsigned>(source.high_bit),
                                    source.is_signed != 0};
    const size_t count = static_cast<size_t>(width) * height;
    for (size_t index = 0; index < count; index++) {
        if (stored_values[index] < layout.minimum() || stored_values[index] > layout.maximum()) {
            return medical_fail(error, error_size,
                                "cannot write '%s': pixel %zu is %d, outside the %u-bit %s range %d...%d of the source",
                                output_path, index, stored_values[index], layout.bitsStored,
                                layout.isSigned ? "signed" : "unsigned", layout.minimum(), layout.maximum());
        }
    }

    OFString classUID, instanceUID;
    dataset->findAndGetOFString(DCM_SOPClassUID, classUID);
    dataset->findAndGetOFString(DCM_SOPInstanceUID, instanceUID);
    if (classUID.empty() || instanceUID.empty()) {
        return medical_fail(error, error_size, "cannot derive from '%s': it has no SOP Class or SOP Instance UID",
                            source_path);
    }
    const std::string imageType = derivedImageType(dataset);
    dropElementsThatDescribeTheSourcePixels(dataset);

    char newInstanceUID[100], newSeriesUID[100];
    dcmGenerateUniqueIdentifier(newInstanceUID, SITE_INSTANCE_UID_ROOT);
    dcmGenerateUniqueIdentifier(newSeriesUID, SITE_SERIES_UID_ROOT);
    OFString date, time;
    OFDateTime::getCurrentDateTime().getDate().getISOFormattedDate(date, false);
    OFDateTime::getCurrentDateTime().getTime().getISOFormattedTime(time, true, false, false, false);

    OFCondition status = dataset->putAndInsertString(DCM_SOPInstanceUID, newInstanceUID);
    if (status.good()) status = dataset->putAndInsertString(DCM_SeriesInstanceUID, newSeriesUID);
    if (status.good()) status = dataset->putAndInsertOFStringArray(DCM_ImageType, imageType.c_str());
    if (status.good()) status = addSourceReference(dataset, DCM_SourceImageSequence, classUID, instanceUID);
    if (status.good()) status = addSourceReference(dataset, DCM_ReferencedImageSequence, classUID, instanceUID);
    if (status.good() && derivation && derivation->derivation_description) {
        status = dataset->putAndInsertString(DCM_DerivationDescription, derivation->derivation_description);
    }
    if (status.good() && derivation && derivation->image_comments) {
        status = dataset->putAndInsertString(DCM_ImageComments, derivation->image_comments);
    }
    if (status.good() && derivation && derivation->series_description) {
        status = dataset->putAndInsertString(DCM_SeriesDescription, derivation->series_description);
    }
    if (status.good() && derivation && derivation->series_number >= 0) {
        status = dataset->putAndInsertString(DCM_SeriesNumber, std::to_string(derivation->series_number).c_str());
    }
    if (status.good()) status = dataset->putAndInsertString(DCM_BurnedInAnnotation, "NO");
    if (status.good()) status = dataset->putAndInsertString(DCM_InstanceCreationDate, date.c_str());
    if (status.good()) status = dataset->putAndInsertString(DCM_InstanceCreationTime, time.c_str());
    if (status.good()) status = dataset->putAndInsertString(DCM_ContentDate, date.c_str());
    if (status.good()) status = dataset->putAndInsertString(DCM_ContentTime, time.c_str());
    if (status.good()) status = dataset->putAndInsertString(DCM_SeriesDate, date.c_str());
    if (status.good()) status = dataset->putAndInsertString(DCM_SeriesTime, time.c_str());
    if (status.good()) {
        if (layout.bitsAllocated == 8) {
            std::vector<Uint8> packed(count);
            for (size_t index = 0; index < count; index++) packed[index] = static_cast<Uint8>(layout.pack(stored_values[index]));
            status = dataset->putAndInsertUint8Array(DCM_PixelData, packed.data(), count);
        } else {
            std::vector<Uint16> packed(count);
            for (size_t index = 0; index < count; index++) packed[index] = static_cast<Uint16>(layout.pack(stored_values[index]));
            status = dataset->putAndInsertUint16Array(DCM_PixelData, packed.data(), count);
        }
    }
    if (status.bad()) {
        return medical_fail(error, error_size, "cannot write '%s': %s", output_path, status.text());
    }
    std::vector<unsigned char> bytes;
    status = encode(file, bytes);
    if (status.bad()) {
        return medical_fail(error, error_size, "cannot write '%s': encoding failed: %s", output_path, status.text());
    }
    if (medical_write_atomically(output_path, bytes.data(), bytes.size(), error, error_size) != 0) return -1;
    if (sop_instance_uid) std::snprintf(sop_instance_uid, 65, "%s", newInstanceUID);
    return 0;
}
