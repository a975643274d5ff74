"""De-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

The profile is the table ``PROFILE_TABLE`` below, kept as data (pydicom ships none): one row per
attribute with the Basic Profile action and the actions of the options implemented here.
Action codes as in PS3.15 Table E.1-1:

* ``D`` replace with a non-zero-length dummy value, ``Z`` replace with an empty (or dummy) value,
  ``X`` remove, ``K`` keep, ``C`` clean (dates: shift per patient; text: scrub identifying words),
  ``U`` replace the UID with a consistent new one.
* Compound actions depend on the attribute's type in the IOD (``X/Z``, ``Z/D``, ...). Without an
  IOD-by-IOD table we resolve them to the form that keeps every IOD valid: any compound with ``D``
  on a date or time becomes ``D`` (Type 1 dates such as ContentDate or AcquisitionDateTime of
  enhanced images stay present), other ``X/Z``, ``Z/D`` and ``X/Z/D`` become ``Z`` (Type 2 stays
  present), other ``X/D`` become ``X``, and ``X/Z/U*`` becomes ``U`` (the referenced UIDs inside are
  remapped). ``D`` on a sequence (e.g. ContentSequence) leaves it present but empty.

Option columns (``.`` means "as the Basic Profile"):

* ``full``  Retain Longitudinal Temporal Information with Full Dates (DCM 113106),
* ``shift`` Retain Longitudinal Temporal Information with Modified Dates (DCM 113107): every date of
  a patient moves by the same whole number of days, derived from a keyed hash of the patient's
  identity, so intervals between studies survive and times of day are unchanged,
* ``clean`` Clean Descriptors (DCM 113105): descriptions are kept with names, IDs and dates
  scrubbed out instead of being removed.

Private attributes are removed (Basic Profile) unless listed in ``SAFE_PRIVATE`` and the Retain
Safe Private option (DCM 113111) is on; the list holds only the few technical values that the
loader needs to rebuild geometry and physical values (Siemens MOSAIC, Philips scaling) or that
carry diffusion encoding.

Pseudonyms and new UIDs come from HMAC-SHA256 under a secret: the same input UID always maps to
the same output UID under the same secret (across files, series, runs), so references between
instances, series and studies stay intact, and nobody without the secret can link them back.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID_dictionary

from medscan.io.dicom import iter_files
from medscan.io.export import check_output_folder, publish_folder
from medscan.scan import MedscanError

__all__ = [
    "PROFILE_TABLE", "SAFE_PRIVATE", "DeidOptions", "DeidReport", "Deidentifier", "ProfileRule",
    "burned_in_risk", "deidentify_folder", "profile_rules",
]

# PS3.15 Table E.1-1, every row, in tag order. Basic Profile column checked against the table of the
# current edition (2026c, as scraped into the dicom-anonymizer package's dicomfields_2026c.py); option
# columns (Retain Longitudinal Temporal Information, Clean Descriptors) checked against the
# innolitics/dicom-standard extraction of the same table (confidentiality_profile_attributes.json).
# Attributes newer than pydicom's dictionary carry the standard's name as keyword.
# tag          basic   full  shift clean  keyword
PROFILE_TABLE = """
0000,1000      X       .     .     .      AffectedSOPInstanceUID
0000,1001      U       .     .     .      RequestedSOPInstanceUID
0002,0003      U       .     .     .      MediaStorageSOPInstanceUID
0004,1511      U       .     .     .      ReferencedSOPInstanceUIDInFile
0008,0012      X/D     K     C     .      InstanceCreationDate
0008,0013      X/Z/D   K     C     .      InstanceCreationTime
0008,0014      U       .     .     .      InstanceCreatorUID
0008,0015      X       K     C     .      InstanceCoercionDateTime
0008,0017      U       .     .     .      AcquisitionUID
0008,0018      U       .     .     .      SOPInstanceUID
0008,0019      U       .     .     .      PyramidUID
0008,0020      Z       K     C     .      StudyDate
0008,0021      X/D     K     C     .      SeriesDate
0008,0022      X/Z     K     C     .      AcquisitionDate
0008,0023      Z/D     K     C     .      ContentDate
0008,0024      X       K     C     .      OverlayDate
0008,0025      X       K     C     .      CurveDate
0008,002A      X/Z/D   K     C     .      AcquisitionDateTime
0008,0030      Z       K     C     .      StudyTime
0008,0031      X/D     K     C     .      SeriesTime
0008,0032      X/Z     K     C     .      AcquisitionTime
0008,0033      Z/D     K     C     .      ContentTime
0008,0034      X       K     C     .      OverlayTime
0008,0035      X       K     C     .      CurveTime
0008,0050      Z       .     .     .      AccessionNumber
0008,0054      X       .     .     .      RetrieveAETitle
0008,0055      X       .     .     .      StationAETitle
0008,0058      U       .     .     .      FailedSOPInstanceUIDList
0008,0080      X/Z/D   .     .     .      InstitutionName
0008,0081      X       .     .     .      InstitutionAddress
0008,0082      X/Z/D   .     .     .      InstitutionCodeSequence
0008,0090      Z       .     .     .      ReferringPhysicianName
0008,0092      X       .     .     .      ReferringPhysicianAddress
0008,0094      X       .     .     .      ReferringPhysicianTelephoneNumbers
0008,0096      X       .     .     .      ReferringPhysicianIdentificationSequence
0008,009C      Z       .     .     .      ConsultingPhysicianName
0008,009D      X       .     .     .      ConsultingPhysicianIdentificationSequence
0008,0106      D       K     C     .      ContextGroupVersion
0008,0107      D       K     C     .      ContextGroupLocalVersion
0008,0201      X       K     C     .      TimezoneOffsetFromUTC
0008,1000      X       .     .     .      NetworkID
0008,1010      X/Z/D   .     .     .      StationName
0008,1030      X       .     .     C      StudyDescription
0008,103E      X       .     .     C      SeriesDescription
0008,1040      X       .     .     .      InstitutionalDepartmentName
0008,1041      X       .     .     .      InstitutionalDepartmentTypeCodeSequence
0008,1048      X       .     .     .      PhysiciansOfRecord
0008,1049      X       .     .     .      PhysiciansOfRecordIdentificationSequence
0008,1050      X       .     .     .      PerformingPhysicianName
0008,1052      X       .     .     .      PerformingPhysicianIdentificationSequence
0008,1060      X       .     .     .      NameOfPhysiciansReadingStudy
0008,1062      X       .     .     .      PhysiciansReadingStudyIdentificationSequence
0008,1070      X/Z/D   .     .     .      OperatorsName
0008,1072      X/D     .     .     .      OperatorIdentificationSequence
0008,1080      X       .     .     C      AdmittingDiagnosesDescription
0008,1084      X       .     .     C      AdmittingDiagnosesCodeSequence
0008,1088      X       .     .     .      PyramidDescription
0008,1110      X/Z     .     .     .      ReferencedStudySequence
0008,1111      X/Z/D   .     .     .      ReferencedPerformedProcedureStepSequence
0008,1120      X       .     .     .      ReferencedPatientSequence
0008,1140      X/Z/U*  .     .     .      ReferencedImageSequence
0008,1155      U       .     .     .      ReferencedSOPInstanceUID
0008,1195      U       .     .     .      TransactionUID
0008,1301      X       .     .     .      PrincipalDiagnosisCodeSequence
0008,1302      X       .     .     .      PrimaryDiagnosisCodeSequence
0008,1303      X       .     .     .      SecondaryDiagnosesCodeSequence
0008,1304      X       .     .     .      HistologicalDiagnosesCodeSequence
0008,2111      X       .     .     C      DerivationDescription
0008,2112      X/Z/U*  .     .     .      SourceImageSequence
0008,3010      U       .     .     .      IrradiationEventUID
0008,4000      X       .     .     C      IdentifyingComments
0010,0010      Z       .     .     .      PatientName
0010,0011      X       .     .     .      PersonNamesToUseSequence
0010,0012      X       .     .     .      NameToUse
0010,0013      X       .     .     .      NameToUseComment
0010,0014      X       .     .     .      ThirdPersonPronounsSequence
0010,0015      X       .     .     .      PronounCodeSequence
0010,0016      X       .     .     .      PronounComment
0010,0020      Z/D     .     .     .      PatientID
0010,0021      X       .     .     .      IssuerOfPatientID
0010,0030      Z       .     .     .      PatientBirthDate
0010,0032      X       .     .     .      PatientBirthTime
0010,0040      Z       .     .     .      PatientSex
0010,0041      X       .     .     .      GenderIdentitySequence
0010,0042      X       .     .     .      SexParametersForClinicalUseCategoryComment
0010,0043      X       .     .     .      SexParametersForClinicalUseCategorySequence
0010,0044      X       .     .     .      GenderIdentityCodeSequence
0010,0045      X       .     .     .      GenderIdentityComment
0010,0046      X       .     .     .      SexParametersForClinicalUseCategoryCodeSequence
0010,0047      X       .     .     .      SexParametersForClinicalUseCategoryReference
0010,0050      X       .     .     .      PatientInsurancePlanCodeSequence
0010,0101      X       .     .     .      PatientPrimaryLanguageCodeSequence
0010,0102      X       .     .     .      PatientPrimaryLanguageModifierCodeSequence
0010,1000      X       .     .     .      OtherPatientIDs
0010,1001      X       .     .     .      OtherPatientNames
0010,1002      X       .     .     .      OtherPatientIDsSequence
0010,1005      X       .     .     .      PatientBirthName
0010,1010      X       .     .     .      PatientAge
0010,1020      X       .     .     .      PatientSize
0010,1030      X       .     .     .      PatientWeight
0010,1040      X       .     .     .      PatientAddress
0010,1050      X       .     .     .      InsurancePlanIdentification
0010,1060      X       .     .     .      PatientMotherBirthName
0010,1080      X       .     .     .      MilitaryRank
0010,1081      X       .     .     .      BranchOfService
0010,1090      X       .     .     .      MedicalRecordLocator
0010,1100      X       .     .     .      ReferencedPatientPhotoSequence
0010,2000      X       .     .     C      MedicalAlerts
0010,2110      X       .     .     C      Allergies
0010,2150      X       .     .     .      CountryOfResidence
0010,2152      X       .     .     .      RegionOfResidence
0010,2154      X       .     .     .      PatientTelephoneNumbers
0010,2155      X       .     .     .      PatientTelecomInformation
0010,2160      X       .     .     .      EthnicGroup
0010,2161      X       .     .     .      EthnicGroupCodeSequence
0010,2162      X       .     .     .      EthnicGroups
0010,2180      X       .     .     C      Occupation
0010,21A0      X       .     .     .      SmokingStatus
0010,21B0      X       .     .     C      AdditionalPatientHistory
0010,21C0      X       .     .     .      PregnancyStatus
0010,21D0      X       K     C     .      LastMenstrualDate
0010,21F0      X       .     .     .      PatientReligiousPreference
0010,2203      X/Z     .     .     .      PatientSexNeutered
0010,2297      X       .     .     .      ResponsiblePerson
0010,2299      X       .     .     .      ResponsibleOrganization
0010,4000      X       .     .     C      PatientComments
0012,0010      D       .     .     .      ClinicalTrialSponsorName
0012,0020      D       .     .     .      ClinicalTrialProtocolID
0012,0021      Z       .     .     .      ClinicalTrialProtocolName
0012,0022      X       .     .     .      IssuerOfClinicalTrialProtocolID
0012,0023      X       .     .     .      OtherClinicalTrialProtocolIDsSequence
0012,0030      Z       .     .     .      ClinicalTrialSiteID
0012,0031      Z       .     .     .      ClinicalTrialSiteName
0012,0032      X       .     .     .      IssuerOfClinicalTrialSiteID
0012,0040      D       .     .     .      ClinicalTrialSubjectID
0012,0041      X       .     .     .      IssuerOfClinicalTrialSubjectID
0012,0042      D       .     .     .      ClinicalTrialSubjectReadingID
0012,0043      X       .     .     .      IssuerOfClinicalTrialSubjectReadingID
0012,0050      Z       .     .     .      ClinicalTrialTimePointID
0012,0051      X       .     .     C      ClinicalTrialTimePointDescription
0012,0055      X       .     .     .      IssuerOfClinicalTrialTimePointID
0012,0060      Z       .     .     .      ClinicalTrialCoordinatingCenterName
0012,0071      X       .     .     .      ClinicalTrialSeriesID
0012,0072      X       .     .     C      ClinicalTrialSeriesDescription
0012,0073      X       .     .     .      IssuerOfClinicalTrialSeriesID
0012,0081      D       .     .     .      ClinicalTrialProtocolEthicsCommitteeName
0012,0082      X       .     .     .      ClinicalTrialProtocolEthicsCommitteeApprovalNumber
0012,0086      X       K     C     .      EthicsCommitteeApprovalEffectivenessStartDate
0012,0087      X       K     C     .      EthicsCommitteeApprovalEffectivenessEndDate
0014,407C      X       K     C     .      CalibrationTime
0014,407E      X       K     C     .      CalibrationDate
0016,002B      X       .     .     C      MakerNote
0016,004B      X       .     .     C      DeviceSettingDescription
0016,004D      X       .     .     .      CameraOwnerName
0016,004E      X       .     .     .      LensSpecification
0016,004F      X       .     .     .      LensMake
0016,0050      X       .     .     .      LensModel
0016,0051      X       .     .     .      LensSerialNumber
0016,0070      X       .     .     .      GPSVersionID
0016,0071      X       .     .     .      GPSLatitudeRef
0016,0072      X       .     .     .      GPSLatitude
0016,0073      X       .     .     .      GPSLongitudeRef
0016,0074      X       .     .     .      GPSLongitude
0016,0075      X       .     .     .      GPSAltitudeRef
0016,0076      X       .     .     .      GPSAltitude
0016,0077      X       K     C     .      GPSTimeStamp
0016,0078      X       .     .     .      GPSSatellites
0016,0079      X       .     .     .      GPSStatus
0016,007A      X       .     .     .      GPSMeasureMode
0016,007B      X       .     .     .      GPSDOP
0016,007C      X       .     .     .      GPSSpeedRef
0016,007D      X       .     .     .      GPSSpeed
0016,007E      X       .     .     .      GPSTrackRef
0016,007F      X       .     .     .      GPSTrack
0016,0080      X       .     .     .      GPSImgDirectionRef
0016,0081      X       .     .     .      GPSImgDirection
0016,0082      X       .     .     .      GPSMapDatum
0016,0083      X       .     .     .      GPSDestLatitudeRef
0016,0084      X       .     .     .      GPSDestLatitude
0016,0085      X       .     .     .      GPSDestLongitudeRef
0016,0086      X       .     .     .      GPSDestLongitude
0016,0087      X       .     .     .      GPSDestBearingRef
0016,0088      X       .     .     .      GPSDestBearing
0016,0089      X       .     .     .      GPSDestDistanceRef
0016,008A      X       .     .     .      GPSDestDistance
0016,008B      X       .     .     .      GPSProcessingMethod
0016,008C      X       .     .     .      GPSAreaInformation
0016,008D      X       K     C     .      GPSDateStamp
0016,008E      X       .     .     .      GPSDifferential
0018,0010      Z/D     .     .     C      ContrastBolusAgent
0018,0027      X       K     C     .      InterventionDrugStopTime
0018,0035      X       K     C     .      InterventionDrugStartTime
0018,1000      X/Z/D   .     .     .      DeviceSerialNumber
0018,1002      U       .     .     .      DeviceUID
0018,1004      X       .     .     .      PlateID
0018,1005      X       .     .     .      GeneratorID
0018,1007      X       .     .     .      CassetteID
0018,1008      X       .     .     .      GantryID
0018,1009      X       .     .     .      UniqueDeviceIdentifier
0018,100A      X       .     .     .      UDISequence
0018,100B      U       .     .     .      ManufacturerDeviceClassUID
0018,1010      X       .     .     .      SecondaryCaptureDeviceID
0018,1011      X       .     .     .      HardcopyCreationDeviceID
0018,1012      X       K     C     .      DateOfSecondaryCapture
0018,1014      X       K     C     .      TimeOfSecondaryCapture
0018,1030      X/D     .     .     C      ProtocolName
0018,1042      X       K     C     .      ContrastBolusStartTime
0018,1043      X       K     C     .      ContrastBolusStopTime
0018,1072      X       K     C     .      RadiopharmaceuticalStartTime
0018,1073      X       K     C     .      RadiopharmaceuticalStopTime
0018,1078      X       K     C     .      RadiopharmaceuticalStartDateTime
0018,1079      X       K     C     .      RadiopharmaceuticalStopDateTime
0018,11BB      D       .     .     C      AcquisitionFieldOfViewLabel
0018,1200      X       K     C     .      DateOfLastCalibration
0018,1201      X       K     C     .      TimeOfLastCalibration
0018,1202      X       K     C     .      DateTimeOfLastCalibration
0018,1203      Z       K     C     .      CalibrationDateTime
0018,1204      X       K     C     .      DateOfManufacture
0018,1205      X       K     C     .      DateOfInstallation
0018,1400      X/D     .     .     C      AcquisitionDeviceProcessingDescription
0018,2042      U       .     .     .      TargetUID
0018,4000      X       .     .     C      AcquisitionComments
0018,5011      X       .     .     .      TransducerIdentificationSequence
0018,700A      X/D     .     .     .      DetectorID
0018,700C      X/D     K     C     .      DateOfLastDetectorCalibration
0018,700E      X/D     K     C     .      TimeOfLastDetectorCalibration
0018,9074      D       K     C     .      FrameAcquisitionDateTime
0018,9151      D       K     C     .      FrameReferenceDateTime
0018,9185      X       .     .     C      RespiratoryMotionCompensationTechniqueDescription
0018,9367      D       .     .     .      XRaySourceID
0018,9369      D       K     C     .      SourceStartDateTime
0018,936A      D       K     C     .      SourceEndDateTime
0018,9371      D       .     .     .      XRayDetectorID
0018,9373      X       .     .     .      XRayDetectorLabel
0018,937B      X       .     .     C      MultienergyAcquisitionDescription
0018,937F      X       .     .     C      DecompositionDescription
0018,9424      X       .     .     C      AcquisitionProtocolDescription
0018,9516      X/D     K     C     .      StartAcquisitionDateTime
0018,9517      X/D     K     C     .      EndAcquisitionDateTime
0018,9623      D       K     C     .      FunctionalSyncPulse
0018,9701      D       K     C     .      DecayCorrectionDateTime
0018,9804      D       K     C     .      ExclusionStartDateTime
0018,9919      Z/D     K     C     .      InstructionPerformedDateTime
0018,9937      X       .     .     C      RequestedSeriesDescription
0018,A002      X       K     C     .      ContributionDateTime
0018,A003      X       .     .     C      ContributionDescription
0020,000D      U       .     .     .      StudyInstanceUID
0020,000E      U       .     .     .      SeriesInstanceUID
0020,0010      Z       .     .     .      StudyID
0020,0027      X       .     .     .      PyramidLabel
0020,0052      U       .     .     .      FrameOfReferenceUID
0020,0200      U       .     .     .      SynchronizationFrameOfReferenceUID
0020,3401      X       .     .     .      ModifyingDeviceID
0020,3403      X       K     C     .      ModifiedImageDate
0020,3405      X       K     C     .      ModifiedImageTime
0020,3406      X       .     .     .      ModifiedImageDescription
0020,4000      X       .     .     C      ImageComments
0020,9158      X       .     .     C      FrameComments
0020,9161      U       .     .     .      ConcatenationUID
0020,9164      U       .     .     .      DimensionOrganizationUID
0028,1199      U       .     .     .      PaletteColorLookupTableUID
0028,1214      U       .     .     .      LargePaletteColorLookupTableUID
0028,4000      X       .     .     .      ImagePresentationComments
0032,0012      X       .     .     .      StudyIDIssuer
0032,0032      X       K     C     .      StudyVerifiedDate
0032,0033      X       K     C     .      StudyVerifiedTime
0032,0034      X       K     C     .      StudyReadDate
0032,0035      X       K     C     .      StudyReadTime
0032,1000      X       K     C     .      ScheduledStudyStartDate
0032,1001      X       K     C     .      ScheduledStudyStartTime
0032,1010      X       K     C     .      ScheduledStudyStopDate
0032,1011      X       K     C     .      ScheduledStudyStopTime
0032,1020      X       .     .     .      ScheduledStudyLocation
0032,1021      X       .     .     .      ScheduledStudyLocationAETitle
0032,1030      X       .     .     C      ReasonForStudy
0032,1032      X       .     .     .      RequestingPhysician
0032,1033      X       .     .     .      RequestingService
0032,1040      X       K     C     .      StudyArrivalDate
0032,1041      X       K     C     .      StudyArrivalTime
0032,1050      X       K     C     .      StudyCompletionDate
0032,1051      X       K     C     .      StudyCompletionTime
0032,1060      X/Z     .     .     C      RequestedProcedureDescription
0032,1066      X       .     .     C      ReasonForVisit
0032,1067      X       .     .     C      ReasonForVisitCodeSequence
0032,1070      X       .     .     C      RequestedContrastAgent
0032,4000      X       .     .     C      StudyComments
0034,0001      D       .     .     .      FlowIdentifierSequence
0034,0002      D       .     .     .      FlowIdentifier
0034,0005      D       .     .     .      SourceIdentifier
0034,0007      D       .     .     .      FrameOriginTimestamp
0038,0004      X       .     .     .      ReferencedPatientAliasSequence
0038,0010      X       .     .     .      AdmissionID
0038,0011      X       .     .     .      IssuerOfAdmissionID
0038,0014      X       .     .     .      IssuerOfAdmissionIDSequence
0038,001A      X       K     C     .      ScheduledAdmissionDate
0038,001B      X       K     C     .      ScheduledAdmissionTime
0038,001C      X       K     C     .      ScheduledDischargeDate
0038,001D      X       K     C     .      ScheduledDischargeTime
0038,001E      X       .     .     .      ScheduledPatientInstitutionResidence
0038,0020      X       K     C     .      AdmittingDate
0038,0021      X       K     C     .      AdmittingTime
0038,0030      X       K     C     .      DischargeDate
0038,0032      X       K     C     .      DischargeTime
0038,0040      X       .     .     C      DischargeDiagnosisDescription
0038,0050      X       .     .     .      SpecialNeeds
0038,0060      X       .     .     .      ServiceEpisodeID
0038,0061      X       .     .     .      IssuerOfServiceEpisodeID
0038,0062      X       .     .     C      ServiceEpisodeDescription
0038,0064      X       .     .     .      IssuerOfServiceEpisodeIDSequence
0038,0300      X       .     .     .      CurrentPatientLocation
0038,0400      X       .     .     .      PatientInstitutionResidence
0038,0500      X       .     .     C      PatientState
0038,4000      X       .     .     C      VisitComments
003A,0020      X       .     .     .      MultiplexGroupLabel
003A,0203      X       .     .     .      ChannelLabel
003A,020C      X       .     .     .      ChannelDerivationDescription
003A,0310      U       .     .     .      MultiplexGroupUID
003A,0314      D       K     C     .      ImpedanceMeasurementDateTime
003A,0329      X       .     .     .      WaveformFilterDescription
003A,032B      X       .     .     .      FilterLookupTableDescription
0040,0001      X       .     .     .      ScheduledStationAETitle
0040,0002      X       K     C     .      ScheduledProcedureStepStartDate
0040,0003      X       K     C     .      ScheduledProcedureStepStartTime
0040,0004      X       K     C     .      ScheduledProcedureStepEndDate
0040,0005      X       K     C     .      ScheduledProcedureStepEndTime
0040,0006      X       .     .     .      ScheduledPerformingPhysicianName
0040,0007      X       .     .     C      ScheduledProcedureStepDescription
0040,0009      X       .     .     .      ScheduledProcedureStepID
0040,000B      X       .     .     .      ScheduledPerformingPhysicianIdentificationSequence
0040,0010      X       .     .     .      ScheduledStationName
0040,0011      X       .     .     .      ScheduledProcedureStepLocation
0040,0012      X       .     .     .      PreMedication
0040,0241      X       .     .     .      PerformedStationAETitle
0040,0242      X       .     .     .      PerformedStationName
0040,0243      X       .     .     .      PerformedLocation
0040,0244      X       K     C     .      PerformedProcedureStepStartDate
0040,0245      X       K     C     .      PerformedProcedureStepStartTime
0040,0250      X       K     C     .      PerformedProcedureStepEndDate
0040,0251      X       K     C     .      PerformedProcedureStepEndTime
0040,0253      X       .     .     .      PerformedProcedureStepID
0040,0254      X       .     .     C      PerformedProcedureStepDescription
0040,0275      X       .     .     C      RequestAttributesSequence
0040,0280      X       .     .     C      CommentsOnThePerformedProcedureStep
0040,0310      X       .     .     C      CommentsOnRadiationDose
0040,050A      X       .     .     .      SpecimenAccessionNumber
0040,0512      D       .     .     .      ContainerIdentifier
0040,0513      Z       .     .     .      IssuerOfTheContainerIdentifierSequence
0040,051A      X       .     .     C      ContainerDescription
0040,0551      D       .     .     .      SpecimenIdentifier
0040,0554      U       .     .     .      SpecimenUID
0040,0555      X/Z     .     .     .      AcquisitionContextSequence
0040,0556      X       .     .     .      AcquisitionContextDescription
0040,0562      Z       .     .     .      IssuerOfTheSpecimenIdentifierSequence
0040,0600      X       .     .     C      SpecimenShortDescription
0040,0602      X       .     .     C      SpecimenDetailedDescription
0040,0610      Z       .     .     .      SpecimenPreparationSequence
0040,06FA      X       .     .     .      SlideIdentifier
0040,1001      X       .     .     .      RequestedProcedureID
0040,1002      X       .     .     C      ReasonForTheRequestedProcedure
0040,1004      X       .     .     .      PatientTransportArrangements
0040,1005      X       .     .     .      RequestedProcedureLocation
0040,100A      X       .     .     C      ReasonForRequestedProcedureCodeSequence
0040,1010      X       .     .     .      NamesOfIntendedRecipientsOfResults
0040,1011      X       .     .     .      IntendedRecipientsOfResultsIdentificationSequence
0040,1101      D       .     .     .      PersonIdentificationCodeSequence
0040,1102      X       .     .     .      PersonAddress
0040,1103      X       .     .     .      PersonTelephoneNumbers
0040,1104      X       .     .     .      PersonTelecomInformation
0040,1400      X       .     .     C      RequestedProcedureComments
0040,2001      X       .     .     C      ReasonForTheImagingServiceRequest
0040,2004      X       K     C     .      IssueDateOfImagingServiceRequest
0040,2005      X       K     C     .      IssueTimeOfImagingServiceRequest
0040,2008      X       .     .     .      OrderEnteredBy
0040,2009      X       .     .     .      OrderEntererLocation
0040,2010      X       .     .     .      OrderCallbackPhoneNumber
0040,2011      X       .     .     .      OrderCallbackTelecomInformation
0040,2016      Z       .     .     .      PlacerOrderNumberImagingServiceRequest
0040,2017      Z       .     .     .      FillerOrderNumberImagingServiceRequest
0040,2400      X       .     .     C      ImagingServiceRequestComments
0040,3001      X       .     .     .      ConfidentialityConstraintOnPatientDataDescription
0040,4005      X       K     C     .      ScheduledProcedureStepStartDateTime
0040,4008      X       K     C     .      ScheduledProcedureStepExpirationDateTime
0040,4010      X       K     C     .      ScheduledProcedureStepModificationDateTime
0040,4011      X       K     C     .      ExpectedCompletionDateTime
0040,4023      U       .     .     .      ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
0040,4025      X       .     .     .      ScheduledStationNameCodeSequence
0040,4027      X       .     .     .      ScheduledStationGeographicLocationCodeSequence
0040,4028      X       .     .     .      PerformedStationNameCodeSequence
0040,4030      X       .     .     .      PerformedStationGeographicLocationCodeSequence
0040,4034      X       .     .     .      ScheduledHumanPerformersSequence
0040,4035      X       .     .     .      ActualHumanPerformersSequence
0040,4036      X       .     .     .      HumanPerformerOrganization
0040,4037      X       .     .     .      HumanPerformerName
0040,4050      X       K     C     .      PerformedProcedureStepStartDateTime
0040,4051      X       K     C     .      PerformedProcedureStepEndDateTime
0040,4052      X       K     C     .      ProcedureStepCancellationDateTime
0040,A023      X       K     C     .      FindingsGroupRecordingDateTrial
0040,A024      X       K     C     .      FindingsGroupRecordingTimeTrial
0040,A027      D       .     .     .      VerifyingOrganization
0040,A030      D       K     C     .      VerificationDateTime
0040,A032      X/D     K     C     .      ObservationDateTime
0040,A033      X       K     C     .      ObservationStartDateTime
0040,A034      X       K     C     .      EffectiveStartDateTime
0040,A035      X       K     C     .      EffectiveStopDateTime
0040,A073      D       .     .     .      VerifyingObserverSequence
0040,A075      D       .     .     .      VerifyingObserverName
0040,A078      X       .     .     .      AuthorObserverSequence
0040,A07A      X       .     .     .      ParticipantSequence
0040,A07C      X       .     .     .      CustodialOrganizationSequence
0040,A082      Z       K     C     .      ParticipationDateTime
0040,A088      Z       .     .     .      VerifyingObserverIdentificationCodeSequence
0040,A110      X       K     C     .      DateOfDocumentOrVerbalTransactionTrial
0040,A112      X       K     C     .      TimeOfDocumentCreationOrVerbalTransactionTrial
0040,A120      D       K     C     .      DateTime
0040,A121      D       K     C     .      Date
0040,A122      D       K     C     .      Time
0040,A123      D       .     .     .      PersonName
0040,A124      U       .     .     .      UID
0040,A13A      D       K     C     .      ReferencedDateTime
0040,A171      U       .     .     .      ObservationUID
0040,A172      U       .     .     .      ReferencedObservationUIDTrial
0040,A192      X       K     C     .      ObservationDateTrial
0040,A193      X       K     C     .      ObservationTimeTrial
0040,A307      X       .     .     .      CurrentObserverTrial
0040,A352      X       .     .     .      VerbalSourceTrial
0040,A353      X       .     .     .      AddressTrial
0040,A354      X       .     .     .      TelephoneNumberTrial
0040,A358      X       .     .     .      VerbalSourceIdentifierCodeSequenceTrial
0040,A402      U       .     .     .      ObservationSubjectUIDTrial
0040,A730      D       .     .     .      ContentSequence
0040,B020      X/D     .     .     .      WaveformAnnotationSequence
0040,B034      X       K     C     .      AnnotationDateTime
0040,B036      X       K     C     .      SegmentDefinitionDateTime
0040,B03B      X       .     .     .      MontageName
0040,B03F      X       .     .     .      MontageChannelLabel
0040,DB06      X       K     C     .      TemplateVersion
0040,DB07      X       K     C     .      TemplateLocalVersion
0040,DB0C      U       .     .     .      TemplateExtensionOrganizationUID
0040,DB0D      U       .     .     .      TemplateExtensionCreatorUID
0040,E004      X       K     C     .      HL7DocumentEffectiveTime
0040,E012      X       .     .     .      DisplayURI
0042,0011      D       .     .     .      EncapsulatedDocument
0044,0004      X       K     C     .      ApprovalStatusDateTime
0044,000B      X       K     C     .      ProductExpirationDateTime
0044,0010      X       K     C     .      SubstanceAdministrationDateTime
0044,0104      D       K     C     .      AssertionDateTime
0044,0105      X       K     C     .      AssertionExpirationDateTime
0050,001B      X       .     .     .      ContainerComponentID
0050,0020      X       .     .     .      DeviceDescription
0050,0021      X       .     .     C      LongDeviceDescription
0062,0021      U       .     .     .      TrackingUID
0064,0003      U       .     .     .      SourceFrameOfReferenceUID
0068,6226      D       K     C     .      EffectiveDateTime
0068,6270      D       K     C     .      InformationIssueDateTime
006A,0003      D       .     .     .      AnnotationGroupUID
006A,0005      D       .     .     .      AnnotationGroupLabel
006A,0006      X       .     .     .      AnnotationGroupDescription
0070,0001      D       .     .     .      GraphicAnnotationSequence
0070,0006      D       .     .     .      UnformattedTextValue
0070,0082      X       K     C     .      PresentationCreationDate
0070,0083      X       K     C     .      PresentationCreationTime
0070,0084      Z/D     .     .     .      ContentCreatorName
0070,0086      X       .     .     .      ContentCreatorIdentificationCodeSequence
0070,031A      U       .     .     .      FiducialUID
0070,1101      U       .     .     .      PresentationDisplayCollectionUID
0070,1102      U       .     .     .      PresentationSequenceCollectionUID
0072,000A      D       K     C     .      HangingProtocolCreationDateTime
0072,005E      D       .     .     .      SelectorAEValue
0072,005F      D       .     .     .      SelectorASValue
0072,0061      D       K     C     .      SelectorDAValue
0072,0063      D       K     C     .      SelectorDTValue
0072,0065      D       .     .     .      SelectorOBValue
0072,0066      D       .     .     .      SelectorLOValue
0072,0068      D       .     .     .      SelectorLTValue
0072,006A      D       .     .     .      SelectorPNValue
0072,006B      D       K     C     .      SelectorTMValue
0072,006C      D       .     .     .      SelectorSHValue
0072,006D      D       .     .     .      SelectorUNValue
0072,006E      D       .     .     .      SelectorSTValue
0072,0070      D       .     .     .      SelectorUTValue
0072,0071      D       .     .     .      SelectorURValue
0074,1234      X       .     .     .      ReceivingAE
0074,1236      X       .     .     .      RequestingAE
0088,0140      U       .     .     .      StorageMediaFileSetUID
0088,0200      X       .     .     .      IconImageSequence
0088,0904      X       .     .     .      TopicTitle
0088,0906      X       .     .     .      TopicSubject
0088,0910      X       .     .     .      TopicAuthor
0088,0912      X       .     .     .      TopicKeywords
0100,0420      X       K     C     .      SOPAuthorizationDateTime
0400,0100      U       .     .     .      DigitalSignatureUID
0400,0105      D       K     C     .      DigitalSignatureDateTime
0400,0115      D       .     .     .      CertificateOfSigner
0400,0310      X       .     .     .      CertifiedTimestamp
0400,0402      X       .     .     .      ReferencedDigitalSignatureSequence
0400,0403      X       .     .     .      ReferencedSOPInstanceMACSequence
0400,0404      X       .     .     .      MAC
0400,0550      X       .     .     .      ModifiedAttributesSequence
0400,0551      X       .     .     .      NonconformingModifiedAttributesSequence
0400,0552      X       .     .     .      NonconformingDataElementValue
0400,0561      X       .     .     .      OriginalAttributesSequence
0400,0562      D       K     C     .      AttributeModificationDateTime
0400,0563      D       .     .     .      ModifyingSystem
0400,0564      Z       .     .     .      SourceOfPreviousValues
0400,0565      D       .     .     .      ReasonForTheAttributeModification
0400,0600      X       .     .     .      InstanceOriginStatus
2030,0020      X       .     .     .      TextString
2100,0040      X       K     C     .      CreationDate
2100,0050      X       K     C     .      CreationTime
2100,0070      X       .     .     .      Originator
2100,0140      D       .     .     .      DestinationAE
2200,0002      X/Z     .     .     C      LabelText
2200,0005      X/Z     .     .     .      BarcodeValue
3002,0121      X       .     .     .      PositionAcquisitionTemplateName
3002,0123      X       .     .     .      PositionAcquisitionTemplateDescription
3006,0002      D       .     .     C      StructureSetLabel
3006,0004      X       .     .     C      StructureSetName
3006,0006      X       .     .     C      StructureSetDescription
3006,0008      Z       K     C     .      StructureSetDate
3006,0009      Z       K     C     .      StructureSetTime
3006,0024      U       .     .     .      ReferencedFrameOfReferenceUID
3006,0026      Z       .     .     C      ROIName
3006,0028      X       .     .     C      ROIDescription
3006,002D      X       K     C     .      ROIDateTime
3006,002E      X       K     C     .      ROIObservationDateTime
3006,0038      X       .     .     C      ROIGenerationDescription
3006,004D      X       .     .     .      ROICreatorSequence
3006,004E      X       .     .     .      ROIInterpreterSequence
3006,0085      X       .     .     C      ROIObservationLabel
3006,0088      X       .     .     C      ROIObservationDescription
3006,00A6      Z       .     .     .      ROIInterpreter
3006,00C2      U       .     .     .      RelatedFrameOfReferenceUID
3008,0024      D       K     C     .      TreatmentControlPointDate
3008,0025      D       K     C     .      TreatmentControlPointTime
3008,0054      X/D     K     C     .      FirstTreatmentDate
3008,0056      X/D     K     C     .      MostRecentTreatmentDate
3008,0105      X/Z     .     .     .      SourceSerialNumber
3008,0162      D       K     C     .      SafePositionExitDate
3008,0164      D       K     C     .      SafePositionExitTime
3008,0166      D       K     C     .      SafePositionReturnDate
3008,0168      D       K     C     .      SafePositionReturnTime
3008,0250      X/D     K     C     .      TreatmentDate
3008,0251      X/D     K     C     .      TreatmentTime
300A,0002      D       .     .     C      RTPlanLabel
300A,0003      X       .     .     C      RTPlanName
300A,0004      X       .     .     C      RTPlanDescription
300A,0006      X/D     K     C     .      RTPlanDate
300A,0007      X/D     K     C     .      RTPlanTime
300A,000B      X       .     .     .      TreatmentSites
300A,000E      X       .     .     C      PrescriptionDescription
300A,0013      U       .     .     .      DoseReferenceUID
300A,0016      X       .     .     C      DoseReferenceDescription
300A,0054      U       .     .     .      TableTopPositionAlignmentUID
300A,0072      X       .     .     C      FractionGroupDescription
300A,0083      U       .     .     .      ReferencedDoseReferenceUID
300A,00B2      X/Z     .     .     .      TreatmentMachineName
300A,00C3      X       .     .     C      BeamDescription
300A,00DD      X       .     .     C      BolusDescription
300A,0196      X       .     .     C      FixationDeviceDescription
300A,01A6      X       .     .     C      ShieldingDeviceDescription
300A,01B2      X       .     .     C      SetupTechniqueDescription
300A,0216      X       .     .     .      SourceManufacturer
300A,022C      D       K     C     .      SourceStrengthReferenceDate
300A,022E      D       K     C     .      SourceStrengthReferenceTime
300A,02EB      X       .     .     C      CompensatorDescription
300A,0608      D       .     .     C      TreatmentPositionGroupLabel
300A,0609      U       .     .     .      TreatmentPositionGroupUID
300A,0611      Z       .     .     .      RTAccessoryHolderSlotID
300A,0615      Z       .     .     .      RTAccessoryDeviceSlotID
300A,0619      D       .     .     C      RadiationDoseIdentificationLabel
300A,0623      D       .     .     C      RadiationDoseInVivoMeasurementLabel
300A,062A      D       .     .     C      RTToleranceSetLabel
300A,0650      U       .     .     .      PatientSetupUID
300A,0676      X       .     .     C      EquipmentFrameOfReferenceDescription
300A,067C      D       .     .     C      RadiationGenerationModeLabel
300A,067D      Z       .     .     C      RadiationGenerationModeDescription
300A,0700      U       .     .     .      TreatmentSessionUID
300A,0734      D       .     .     C      TreatmentToleranceViolationDescription
300A,0736      D       K     C     .      TreatmentToleranceViolationDateTime
300A,073A      D       K     C     .      RecordedRTControlPointDateTime
300A,0741      D       K     C     .      InterlockDateTime
300A,0742      D       .     .     C      InterlockDescription
300A,0760      D       K     C     .      OverrideDateTime
300A,0783      D       .     .     C      InterlockOriginDescription
300A,0785      U       .     .     .      ReferencedTreatmentPositionGroupUID
300A,078E      X       .     .     .      PatientTreatmentPreparationProcedureParameterDescription
300A,0792      X       .     .     .      PatientTreatmentPreparationMethodDescription
300A,0794      X       .     .     .      PatientSetupPhotoDescription
300A,079A      X       .     .     .      DisplacementReferenceLabel
300C,0113      X       .     .     C      ReasonForOmissionDescription
300C,0127      D       K     C     .      BeamHoldTransitionDateTime
300E,0004      Z       K     C     .      ReviewDate
300E,0005      Z       K     C     .      ReviewTime
300E,0008      X/Z     .     .     .      ReviewerName
3010,0006      U       .     .     .      ConceptualVolumeUID
3010,000B      U       .     .     .      ReferencedConceptualVolumeUID
3010,000F      Z       .     .     C      ConceptualVolumeCombinationDescription
3010,0013      U       .     .     .      ConstituentConceptualVolumeUID
3010,0015      U       .     .     .      SourceConceptualVolumeUID
3010,0017      Z       .     .     C      ConceptualVolumeDescription
3010,001B      Z       .     .     .      DeviceAlternateIdentifier
3010,002D      D       .     .     .      DeviceLabel
3010,0031      U       .     .     .      ReferencedFiducialsUID
3010,0033      D       .     .     C      UserContentLabel
3010,0034      D       .     .     C      UserContentLongLabel
3010,0035      D       .     .     C      EntityLabel
3010,0036      X       .     .     C      EntityName
3010,0037      X       .     .     C      EntityDescription
3010,0038      D       .     .     C      EntityLongLabel
3010,003B      U       .     .     .      RTTreatmentPhaseUID
3010,0043      Z       .     .     .      ManufacturerDeviceIdentifier
3010,004C      X/D     K     C     .      IntendedPhaseStartDate
3010,004D      X/D     K     C     .      IntendedPhaseEndDate
3010,0054      D       .     .     C      RTPrescriptionLabel
3010,0056      X/D     .     .     C      RTTreatmentApproachLabel
3010,005A      Z       .     .     C      RTPhysicianIntentNarrative
3010,005C      Z       .     .     C      ReasonForSuperseding
3010,0061      X       .     .     C      PriorTreatmentDoseDescription
3010,006E      U       .     .     .      DosimetricObjectiveUID
3010,006F      U       .     .     .      ReferencedDosimetricObjectiveUID
3010,0077      X/D     .     .     C      TreatmentSite
3010,007A      Z       .     .     C      TreatmentTechniqueNotes
3010,007B      Z       .     .     C      PrescriptionNotes
3010,007F      Z       .     .     C      FractionationNotes
3010,0081      Z       .     .     C      PrescriptionNotesSequence
3010,0085      X       K     C     .      IntendedFractionStartTime
4000,0010      X       .     .     .      Arbitrary
4000,4000      X       .     .     .      TextComments
4008,0040      X       .     .     .      ResultsID
4008,0042      X       .     .     .      ResultsIDIssuer
4008,0100      X       K     C     .      InterpretationRecordedDate
4008,0101      X       K     C     .      InterpretationRecordedTime
4008,0102      X       .     .     .      InterpretationRecorder
4008,0108      X       K     C     .      InterpretationTranscriptionDate
4008,0109      X       K     C     .      InterpretationTranscriptionTime
4008,010A      X       .     .     .      InterpretationTranscriber
4008,010B      X       .     .     C      InterpretationText
4008,010C      X       .     .     .      InterpretationAuthor
4008,0111      X       .     .     .      InterpretationApproverSequence
4008,0112      X       K     C     .      InterpretationApprovalDate
4008,0113      X       K     C     .      InterpretationApprovalTime
4008,0114      X       .     .     .      PhysicianApprovingInterpretation
4008,0115      X       .     .     C      InterpretationDiagnosisDescription
4008,0118      X       .     .     .      ResultsDistributionListSequence
4008,0119      X       .     .     .      DistributionName
4008,011A      X       .     .     .      DistributionAddress
4008,0200      X       .     .     .      InterpretationID
4008,0202      X       .     .     .      InterpretationIDIssuer
4008,0300      X       .     .     C      Impressions
4008,4000      X       .     .     C      ResultsComments
50xx,xxxx      X       .     .     .      CurveData
60xx,3000      X       .     .     .      OverlayData
60xx,4000      X       .     .     .      OverlayComments
FFFA,FFFA      X       .     .     .      DigitalSignaturesSequence
FFFC,FFFC      X       .     .     .      DataSetTrailingPadding
"""

# Not rows of Table E.1-1, but identifying all the same: the sending site's AE titles and private data in
# the file meta group, the issuer of the accession number, creator UIDs, dates in another calendar.
MEDSCAN_ADDITIONS = """
0002,0016      X       .     .     .      SourceApplicationEntityTitle
0002,0017      X       .     .     .      SendingApplicationEntityTitle
0002,0018      X       .     .     .      ReceivingApplicationEntityTitle
0002,0100      X       .     .     .      PrivateInformationCreatorUID
0002,0102      X       .     .     .      PrivateInformation
0008,0051      X       .     .     .      IssuerOfAccessionNumberSequence
0008,010D      U       .     .     .      ContextGroupExtensionCreatorUID
0008,9123      U       .     .     .      CreatorVersionUID
0010,0033      X       .     .     .      PatientBirthDateInAlternativeCalendar
0010,0034      X       .     .     .      PatientDeathDateInAlternativeCalendar
0010,0035      X       .     .     .      PatientAlternativeCalendar
"""

# Retain Safe Private option: (private creator, group, element low byte) -> why it is safe and needed.
SAFE_PRIVATE: dict[tuple[str, int, int], str] = {
    ("SIEMENS MR HEADER", 0x0019, 0x0A): "NumberOfImagesInMosaic: splits a MOSAIC into slices",
    ("SIEMENS MR HEADER", 0x0019, 0x0B): "SliceMeasurementDuration",
    ("SIEMENS MR HEADER", 0x0019, 0x0C): "B_value",
    ("SIEMENS MR HEADER", 0x0019, 0x0D): "DiffusionDirectionality",
    ("SIEMENS MR HEADER", 0x0019, 0x0E): "DiffusionGradientDirection",
    ("SIEMENS MR HEADER", 0x0019, 0x27): "B_matrix",
    ("SIEMENS CSA HEADER", 0x0029, 0x08): "CSA image header type",
    ("SIEMENS CSA HEADER", 0x0029, 0x09): "CSA image header version",
    ("SIEMENS CSA HEADER", 0x0029, 0x10): "CSA image header: slice normal and mosaic layout (technical only)",
    ("Philips MR Imaging DD 001", 0x2005, 0x0D): "ScaleIntercept: Philips floating-point values",
    ("Philips MR Imaging DD 001", 0x2005, 0x0E): "ScaleSlope: Philips floating-point values",
    ("Philips MR Imaging DD 005", 0x2005, 0x0F): "per-frame private group holding ScaleSlope",
    ("GEMS_PARM_01", 0x0043, 0x39): "slice b-value and scaling",
    ("GEMS_ACQU_01", 0x0019, 0xBB): "diffusion gradient x",
    ("GEMS_ACQU_01", 0x0019, 0xBC): "diffusion gradient y",
    ("GEMS_ACQU_01", 0x0019, 0xBD): "diffusion gradient z",
}

# CID 7050 De-identification Method codes.
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
CODE_FULL_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_SAFE_PRIVATE = ("113111", "Retain Safe Private Option")

# Images that may show the patient's name burned into the pixels unless they say otherwise.
BURNED_IN_MODALITIES = {"US", "IVUS", "ES", "XC", "GM", "SM", "OP", "DOC"}
BURNED_IN_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture family
    "1.2.840.10008.5.1.4.1.1.77.1.",  # visible light, video
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated documents
    "1.2.840.10008.5.1.4.1.1.3.1",  # ultrasound multi-frame
    "1.2.840.10008.5.1.4.1.1.6.",  # ultrasound
)

_DATE_VRS = {"DA", "DT", "TM"}
_TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS"}
_DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "PN": "ANONYMOUS", "UI": "2.25.0"}
_DATE_SHIFT_RANGE_DAYS = (365, 3650)  # dates move back 1 to 10 years


@dataclass(frozen=True)
class ProfileRule:
    """One row of ``PROFILE_TABLE``: Basic Profile action plus the implemented option columns."""

    tag: str
    keyword: str
    basic: str
    full: str
    shift: str
    clean: str


def _parse_table(text: str) -> list[ProfileRule]:
    rules = []
    for line in text.strip().splitlines():
        tag, basic, full, shift, clean, keyword = line.split()
        rules.append(ProfileRule(tag, keyword, basic, basic if full == "." else full,
                                 basic if shift == "." else shift, basic if clean == "." else clean))
    return rules


def profile_rules() -> list[ProfileRule]:
    """The profile table, parsed (tests check it against the DICOM dictionary)."""
    return list(_RULES)


_RULES = _parse_table(PROFILE_TABLE) + _parse_table(MEDSCAN_ADDITIONS)
_EXACT: dict[int, ProfileRule] = {}
_MASKED: list[tuple[int, int, ProfileRule]] = []  # (mask, value, rule) for 50xx,xxxx-style rows
for _rule in _RULES:
    _text = _rule.tag.replace(",", "")
    if "x" in _text:
        _mask = int("".join("0" if c == "x" else "F" for c in _text), 16)
        _MASKED.append((_mask, int(_text.replace("x", "0"), 16), _rule))
    else:
        _EXACT[int(_text, 16)] = _rule


def _rule_for(tag: BaseTag) -> ProfileRule | None:
    rule = _EXACT.get(int(tag))
    if rule is not None:
        return rule
    for mask, value, masked in _MASKED:
        if int(tag) & mask == value:
            return masked
    return None


@dataclass(frozen=True)
class DeidOptions:
    """Which PS3.15 options to apply on top of the Basic Profile."""

    date_shift: bool = False  # Retain Longitudinal Temporal Information, Modified Dates
    full_dates: bool = False  # Retain Longitudinal Temporal Information, Full Dates
    keep_descriptors: bool = False  # Clean Descriptors: keep descriptions, scrubbed
    retain_safe_private: bool = True  # keep SAFE_PRIVATE, drop every other private attribute
    allow_burned_in: bool = False  # export images that may show burned-in text, with a warning

    def __post_init__(self) -> None:
        if self.date_shift and self.full_dates:
            raise ValueError("choose either modified (shifted) or full dates, not both")

    def codes(self) -> list[tuple[str, str]]:
        """The DeidentificationMethodCodeSequence entries (CID 7050 code value, meaning) for these options: the
        Basic Profile always, then one per option applied.
        """
        codes = [CODE_BASIC]
        if self.keep_descriptors:
            codes.append(CODE_CLEAN_DESCRIPTORS)
        if self.full_dates:
            codes.append(CODE_FULL_DATES)
        if self.date_shift:
            codes.append(CODE_MODIFIED_DATES)
        if self.retain_safe_private:
            codes.append(CODE_SAFE_PRIVATE)
        return codes


def burned_in_risk(ds: Dataset, has_pixels: bool | None = None) -> str | None:
    """Why ``ds`` may show identifying text in its pixels, or None.

    BurnedInAnnotation YES is a refusal; NO is trusted; when absent, modalities and SOP classes
    that usually carry screen text (ultrasound, secondary capture, video, documents) are suspect.
    ``has_pixels`` says so for a header read without its pixel data.
    """
    if has_pixels is None:
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_pixels and not str(ds.get("SOPClassUID", "")).startswith("1.2.840.10008.5.1.4.1.1.104."):
        return None
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return "BurnedInAnnotation is YES"
    if flag == "NO":
        return None
    modality = str(ds.get("Modality", "") or "").upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if modality in BURNED_IN_MODALITIES:
        return f"modality {modality} without BurnedInAnnotation NO may carry burned-in text"
    if sop_class.startswith(BURNED_IN_SOP_PREFIXES):
        name = UID_dictionary.get(sop_class, (sop_class,))[0]
        return f"{name} without BurnedInAnnotation NO may carry burned-in text"
    return None


class Deidentifier:
    """Applies the profile to datasets; holds the secret that makes pseudonyms and UIDs repeatable."""

    def __init__(self, secret: bytes, options: DeidOptions | None = None) -> None:
        if len(secret) < 16:
            raise ValueError("the de-identification secret must be at least 16 bytes")
        self._secret = secret
        self.options = options or DeidOptions()

    # -- keyed derivations ----------------------------------------------------------------------
    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def map_uid(self, uid: str) -> str:
        """A new UID for ``uid`` ('2.25.' + a UUID built from a keyed hash); well-known UIDs stay."""
        uid = str(uid).strip().rstrip("\0").strip()
        if not uid or uid in UID_dictionary:
            return uid
        return f"2.25.{uuid.UUID(bytes=self._digest('uid', uid)[:16], version=4).int}"

    def pseudonym(self, patient_key: str) -> str:
        """Patient ID and name for one patient: stable under this secret, meaningless without it."""
        return "MS" + self._digest("patient", patient_key).hex()[:14].upper()

    def date_shift_days(self, patient_key: str) -> int:
        """Days (negative) that every date of this patient moves."""
        low, high = _DATE_SHIFT_RANGE_DAYS
        return -(low + int.from_bytes(self._digest("date-shift", patient_key)[:4], "big") % (high - low + 1))

    def name_for(self, purpose: str, value: str) -> str:
        """A short keyed name for output files and folders."""
        return self._digest(purpose, value).hex()[:16]

    # -- datasets -----------------------------------------------------------------------------
    def deidentify(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place (file meta included) and stamp what was done."""
        key = patient_key(ds)
        context = _Context(
            shift_days=self.date_shift_days(key) if self.options.date_shift else 0,
            scrub=_identifying_words(ds),
        )
        pseudonym = self.pseudonym(key)
        self._walk(ds, context)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            self._walk(meta, context)
        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = _method_text(self.options)
        ds.DeidentificationMethodCodeSequence = Sequence([_code_item(v, m) for v, m in self.options.codes()])
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.options.date_shift else "UNMODIFIED" if self.options.full_dates else "REMOVED"
        )
        if hasattr(ds, "preamble") and ds.preamble is not None:
            ds.preamble = b"\0" * 128  # a preamble can hold anything (TIFF headers, vendor data)

    def _action(self, rule: ProfileRule) -> str:
        if self.options.keep_descriptors and rule.clean == "C":
            return "C"
        if self.options.date_shift:
            return rule.shift
        if self.options.full_dates:
            return rule.full
        return rule.basic

    def _walk(self, ds: Dataset, context: _Context) -> None:
        creators = _private_creators(ds)
        kept_blocks: set[tuple[int, int]] = set()
        for tag in list(ds.keys()):
            if tag.is_private:
                if tag.is_private_creator:
                    continue  # decided after the block's elements
                if self._keep_private(tag, creators):
                    kept_blocks.add((tag.group, tag.element >> 8))
                    elem = _element(ds, tag)
                    if elem is not None and elem.VR == "SQ":
                        for item in elem.value:
                            self._walk(item, context)
                else:
                    del ds[tag]
                continue
            if tag.element == 0 and tag.group != 0x0002:
                del ds[tag]  # group lengths (retired) would be wrong once values change
                continue
            if tag.group & 0xFF00 == 0x6000 and tag.group % 2 == 0:
                del ds[tag]  # overlay planes: the table removes their data; the rest is then dangling
                continue
            rule = _rule_for(tag)
            elem = _element(ds, tag)
            if elem is None:
                if rule is not None:
                    del ds[tag]
                continue
            if rule is None:
                self._unlisted(ds, elem, context)
            else:
                self._apply(ds, elem, _resolve(self._action(rule), elem.VR), context)
        for tag in list(ds.keys()):
            if tag.is_private_creator and (tag.group, tag.element) not in kept_blocks:
                del ds[tag]

    def _keep_private(self, tag: BaseTag, creators: dict[tuple[int, int], str]) -> bool:
        if not self.options.retain_safe_private:
            return False
        creator = creators.get((tag.group, tag.element >> 8))
        return creator is not None and (creator, tag.group, tag.element & 0xFF) in SAFE_PRIVATE

    def _apply(self, ds: Dataset, elem: DataElement, action: str, context: _Context) -> None:
        if action == "X":
            del ds[elem.tag]
        elif action == "K":
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item, context)
        elif action == "Z":
            elem.value = elem.empty_value
        elif action == "D":
            _dummy(elem, context)
        elif action == "U":
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item, context)
            elif elem.VR == "UI":
                elem.value = self._map_values(elem.value)
            else:
                del ds[elem.tag]
        elif action == "C":
            _clean(ds, elem, context)
        else:  # pragma: no cover - the table is checked by tests
            raise ValueError(f"unknown action {action!r} for {elem.tag}")

    def _unlisted(self, ds: Dataset, elem: DataElement, context: _Context) -> None:
        """Attributes the table does not name: kept, except for the kinds that identify anyway."""
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, context)
        elif elem.VR == "PN":
            elem.value = elem.empty_value  # any person's name is identifying
        elif elem.VR in ("DA", "DT"):
            if self.options.date_shift:
                _clean(ds, elem, context)
            elif not self.options.full_dates:
                del ds[elem.tag]
        elif elem.VR == "UI" and _is_instance_uid(elem):
            elem.value = self._map_values(elem.value)

    def _map_values(self, value: object) -> object:
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            return [self.map_uid(v) for v in value]
        return self.map_uid(str(value)) if value not in (None, "") else value


@dataclass
class _Context:
    shift_days: int
    scrub: list[str] = field(default_factory=list)


def patient_key(ds: Dataset) -> str:
    """What identifies the patient of ``ds`` for pseudonyms and date shifts."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        return f"id:{ds.get('IssuerOfPatientID', '') or ''}:{patient_id}"
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return f"name:{name}:{ds.get('PatientBirthDate', '') or ''}"
    return f"study:{ds.get('StudyInstanceUID', '') or ''}"


def _element(ds: Dataset, tag: BaseTag) -> DataElement | None:
    """The converted element, or None when its stored value cannot be parsed."""
    try:
        return ds[tag]
    except Exception:
        return None


def _resolve(action: str, vr: str) -> str:
    if "D" in action.split("/") and vr in _DATE_VRS:
        return "D"  # dates and times stay present: a Type 1 DT of an enhanced image must not be empty
    if action in ("X/Z", "X/Z/D", "Z/D"):
        return "Z"
    if action == "X/D":
        return "X"
    if action == "X/Z/U*":
        return "U"
    return action


def _dummy(elem: DataElement, context: _Context) -> None:
    if elem.VR == "SQ":
        elem.value = Sequence()
    elif elem.VR in ("DA", "DT") and context.shift_days:
        elem.value = _shift_value(elem.value, elem.VR, context.shift_days) or _DUMMY[elem.VR]
    elif elem.VR in _DUMMY:
        elem.value = _DUMMY[elem.VR]
    elif elem.VR in _TEXT_VRS:
        elem.value = "ANONYMIZED"[: 16 if elem.VR in ("SH", "CS") else 64]
    else:
        elem.value = elem.empty_value


def _clean(ds: Dataset, elem: DataElement, context: _Context) -> None:
    """Clean: shift dates, keep times (the shift is whole days), scrub identifying words from text."""
    if elem.VR in ("DA", "DT"):
        shifted = _shift_value(elem.value, elem.VR, context.shift_days)
        if shifted is None:
            elem.value = elem.empty_value
        else:
            elem.value = shifted
    elif elem.VR == "TM":
        return
    elif elem.VR in _TEXT_VRS - {"PN"}:
        values = elem.value if isinstance(elem.value, list | pydicom.multival.MultiValue) else [elem.value]
        cleaned = [_scrub(str(v), context.scrub) for v in values if v is not None]
        elem.value = cleaned if len(cleaned) > 1 else (cleaned[0] if cleaned else "")
    else:
        del ds[elem.tag]  # sequences and names under C: nothing safe to keep without a model of them


def _shift_value(value: object, vr: str, days: int) -> object | None:
    if isinstance(value, list | pydicom.multival.MultiValue):
        shifted = [_shift_one(str(v), vr, days) for v in value]
        return None if any(s is None for s in shifted) else shifted
    return _shift_one(str(value), vr, days) if value not in (None, "") else value


def _shift_one(text: str, vr: str, days: int) -> str | None:
    text = text.strip()
    digits = text.replace(".", "") if vr == "DA" else text  # ACR-NEMA 'YYYY.MM.DD'
    if len(digits) < 8 or not digits[:8].isdigit():
        return None
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])) + timedelta(days=days)
    except ValueError:
        return None
    return day.strftime("%Y%m%d") + (digits[8:] if vr == "DT" else "")


_DATE_PATTERN = re.compile(r"\b(?:19|20)\d{2}[-./]?\d{2}[-./]?\d{2}\b|\b\d{1,2}[-./]\d{1,2}[-./](?:19|20)?\d{2}\b")
_NUMBER_PATTERN = re.compile(r"\b\d{6,}\b")  # record numbers, phone numbers


def _identifying_words(ds: Dataset) -> list[str]:
    """Words that must not survive in cleaned descriptions: names, IDs, places of this patient."""
    words: set[str] = set()
    for keyword in ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "AccessionNumber",
                    "PatientBirthDate", "PatientBirthName", "PatientMotherBirthName", "ReferringPhysicianName",
                    "PerformingPhysicianName", "OperatorsName", "InstitutionName", "InstitutionAddress",
                    "StationName", "StudyID", "AdmissionID", "PatientAddress"):
        value = _element(ds, Tag(keyword)) if keyword in ds else None
        if value is None or value.value in (None, ""):
            continue
        values = value.value if isinstance(value.value, list | pydicom.multival.MultiValue) else [value.value]
        for item in values:
            text = str(item)
            words.add(text)
            words.update(re.split(r"[\^\s,=]+", text))
    return sorted((w for w in words if len(w.strip()) >= 3), key=len, reverse=True)


def _scrub(text: str, words: Iterable[str]) -> str:
    for word in words:
        text = re.sub(re.escape(word.strip()), "", text, flags=re.IGNORECASE)
    text = _DATE_PATTERN.sub("", text)
    text = _NUMBER_PATTERN.sub("", text)
    return re.sub(r"\s{2,}", " ", text).strip()


def _private_creators(ds: Dataset) -> dict[tuple[int, int], str]:
    creators = {}
    for tag in list(ds.keys()):  # a Dataset iterates over elements, not tags
        if tag.is_private_creator:
            elem = _element(ds, tag)
            value = elem.value if elem is not None else None
            if isinstance(value, bytes):
                value = value.decode("latin-1", "replace")
            if value:
                creators[(tag.group, tag.element)] = str(value).strip()
    return creators


_CLASS_UID_SUFFIXES = ("ClassUID", "SyntaxUID", "SchemeUID", "ImplementationClassUID", "ResourceUID")


def _is_instance_uid(elem: DataElement) -> bool:
    """Unlisted UIDs that name a thing made for this patient (not a class, syntax or scheme)."""
    keyword = elem.keyword or ""
    return not keyword.endswith(_CLASS_UID_SUFFIXES) and keyword not in ("CodingSchemeUID", "MappingResourceUID")


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _method_text(options: DeidOptions) -> list[str]:
    parts = ["medscan PS3.15 E.1 Basic Profile"]
    parts += [meaning[:64] for _, meaning in options.codes()[1:]]
    return parts


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------
@dataclass
class DeidReport:
    """What a folder export did."""

    out_dir: Path
    written: int = 0
    not_dicom: int = 0
    skipped: list[str] = field(default_factory=list)  # "file: why"
    warnings: list[str] = field(default_factory=list)
    files: list[tuple[str, Path]] = field(default_factory=list)  # (source file, output path relative to out_dir)


def _read_dicom(path: str) -> Dataset | None:
    """The dataset in ``path``; None when it is not DICOM. Raises for broken DICOM."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        ds = pydicom.dcmread(path)
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            # pydicom stops quietly at a truncated element: never export what is left of such a file
            header = pydicom.dcmread(path, stop_before_pixels=True)
            if "Rows" in header or len(header) > len(ds):
                raise ValueError("pixel data missing or truncated")
        return ds
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:
        return None
    return ds if ("SOPClassUID" in ds or "Rows" in ds) else None


def deidentify_folder(
    src: str | Path, out_dir: str | Path, options: DeidOptions | None = None, secret: bytes | None = None
) -> DeidReport:
    """De-identify every DICOM file under ``src`` into ``out_dir``, all or nothing.

    Files are written to a hidden sibling folder renamed onto ``out_dir`` at the end. The layout
    is ``<series>/<instance>.dcm`` with keyed names: folder and file names may identify people.
    Non-DICOM files are not copied. Images that may show burned-in text stop the export unless
    ``options.allow_burned_in``.
    """
    src, out_dir = Path(src), Path(out_dir)
    if not src.exists():
        raise MedscanError(src, "no such file or folder")
    check_output_folder(out_dir)
    options = options or DeidOptions()
    deid = Deidentifier(secret or secrets.token_bytes(32), options)
    report = DeidReport(out_dir=out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.parent / f".tmp-{out_dir.name}-{secrets.token_hex(4)}"
    tmp_dir.mkdir()
    try:
        for file in iter_files(src):
            try:
                ds = _read_dicom(file)
            except Exception as exc:
                report.skipped.append(f"{file}: unreadable DICOM ({exc})")
                continue
            if ds is None:
                report.not_dicom += 1
                continue
            risk = burned_in_risk(ds)
            if risk:
                if not options.allow_burned_in:
                    raise MedscanError(file, f"{risk}; refusing to export (--allow-burned-in to export with a warning)")
                report.warnings.append(f"{file}: {risk}; exported, check the pixels")
            _write(deid, ds, file, src, tmp_dir, report)
        if report.written == 0:
            raise MedscanError(src, "no DICOM files to de-identify")
        publish_folder(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return report


def _save(ds: Dataset, target: Path) -> None:
    """Write ``ds`` as it was encoded; transfer syntaxes pydicom's writer does not know yet (Deflated
    Image Frame Compression) are written by hand: explicit VR little endian, pixel data untouched."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or syntax.is_transfer_syntax:
        ds.save_as(target)
        return
    with open(target, "wb") as fh:
        out = DicomFileLike(fh)
        out.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(out, meta, enforce_standard=False)
        out.is_little_endian, out.is_implicit_VR = True, False
        write_dataset(out, ds)


def _write(deid: Deidentifier, ds: Dataset, file: str, src: Path, tmp_dir: Path, report: DeidReport) -> None:
    series = str(ds.get("SeriesInstanceUID", "") or "")
    instance = str(ds.get("SOPInstanceUID", "") or "")
    folder_key = series or f"folder:{os.path.relpath(os.path.dirname(file), src)}"
    try:
        deid.deidentify(ds)
    except Exception as exc:
        report.skipped.append(f"{file}: cannot be de-identified ({type(exc).__name__}: {exc})")
        return
    folder = tmp_dir / deid.name_for("series", folder_key)
    folder.mkdir(exist_ok=True)
    stem = deid.name_for("instance", instance or os.path.relpath(file, src))
    target = folder / f"{stem}.dcm"
    counter = 1
    while target.exists():  # the same instance twice (e.g. one image in several transfer syntaxes)
        counter += 1
        target = folder / f"{stem}-{counter}.dcm"
    try:
        _save(ds, target)
    except Exception as exc:
        target.unlink(missing_ok=True)
        report.skipped.append(f"{file}: cannot be written ({type(exc).__name__}: {exc})")
        return
    report.written += 1
    report.files.append((file, target.relative_to(tmp_dir)))
