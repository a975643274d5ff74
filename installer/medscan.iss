; medscan setup wizard (Inno Setup 6): installs the PyInstaller one-folder bundle built by
; installer/medscan.spec. Name, version and publisher come from pyproject.toml through the build
; (scripts/build_installer.sh, .github/workflows/windows-installer.yml), never from this file:
;
;   ISCC /DAppName=medscan /DAppVersion=0.1.0 "/DAppPublisher=medscan team"
;        /DBundleDir=..\dist\medscan /DOutputDir=..\dist\installer installer\medscan.iss
;
; Per-user or all-users install (chosen in a dialog, or /CURRENTUSER, /ALLUSERS), Start menu and
; optional desktop shortcuts for medscan-gui, licence page (GPL-3.0-or-later, ../LICENSE) and the
; third-party notices page (../THIRD_PARTY_NOTICES.md), upgrade in place over an older version
; (same AppId; a running medscan is closed first), and an uninstaller that keeps the user's
; databases and settings in %APPDATA%\medscan unless the user ticks "delete" (or passes
; /DELETEUSERDATA to a silent uninstall).

#ifndef AppName
  #error Define AppName (ISCC /DAppName=...): the build script reads it from pyproject.toml
#endif
#ifndef AppVersion
  #error Define AppVersion (ISCC /DAppVersion=...): the build script reads it from pyproject.toml
#endif
#ifndef AppPublisher
  #error Define AppPublisher (ISCC /DAppPublisher=...): the build script reads it from pyproject.toml
#endif
#ifndef BundleDir
  #define BundleDir "..\dist\medscan"
#endif
#ifndef OutputDir
  #define OutputDir "..\dist\installer"
#endif
; lzma2/max + solid: the smallest download; a quick local check may pass /DCompression=lzma2/fast.
#ifndef Compression
  #define Compression "lzma2/max"
#endif
#define GuiExe "medscan-gui.exe"

#if !FileExists(AddBackslash(BundleDir) + "medscan.exe") && !FileExists(AddBackslash(BundleDir) + "medscan")
  #error BundleDir does not hold a medscan bundle: run PyInstaller with installer/medscan.spec first
#endif

[Setup]
; Never change AppId: upgrades, the uninstaller and Windows' "Installed apps" entry find the
; installation through it. (The doubled brace is Inno's escape for a literal "{".)
AppId={{70C910D9-1CF4-4E47-865B-643B21E4D8C0}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppPublisher}
VersionInfoProductName={#AppName}
VersionInfoProductTextVersion={#AppVersion}
VersionInfoCompany={#AppPublisher}
; {autopf} is Program Files for all users, %LOCALAPPDATA%\Programs for the current user only.
DefaultDirName={autopf}\{#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
UsePreviousPrivileges=yes
UsePreviousAppDir=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
; Paths are relative to this file: the repository's own LICENSE and notices, the same files pip installs.
LicenseFile=..\LICENSE
InfoBeforeFile=..\THIRD_PARTY_NOTICES.md
OutputDir={#OutputDir}
OutputBaseFilename={#AppName}-{#AppVersion}-setup
Compression={#Compression}
SolidCompression=yes
LZMAUseSeparateProcess=yes
WizardStyle=modern
UninstallDisplayIcon={app}\{#GuiExe}
UninstallDisplayName={#AppName} {#AppVersion}
; Upgrades: close a running medscan (Restart Manager; .pyd files are DLLs too) instead of failing
; on files in use, and do not restart it behind the user's back.
CloseApplications=yes
CloseApplicationsFilter=*.exe,*.dll,*.pyd
RestartApplications=no
SetupLogging=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[InstallDelete]
; A PyInstaller bundle is one unit: files an older version had and this one dropped must not stay
; behind, where Python would still import them.
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs
Source: "..\LICENSE"; DestDir: "{app}"; DestName: "LICENSE.txt"; Flags: ignoreversion
Source: "..\THIRD_PARTY_NOTICES.md"; DestDir: "{app}"; DestName: "THIRD_PARTY_NOTICES.txt"; Flags: ignoreversion

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#GuiExe}"; WorkingDir: "{app}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#GuiExe}"; WorkingDir: "{app}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#GuiExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
var
  DeleteUserData: Boolean;

{ Databases (SQLCipher files and their blob folders) and settings (medscan-gui.ini) of the user
  who uninstalls. }
function UserDataDir(): String;
begin
  Result := ExpandConstant('{userappdata}\{#AppName}');
end;

function HasSwitch(const Name: String): Boolean;
var
  I: Integer;
begin
  Result := False;
  for I := 1 to ParamCount do
    if CompareText(ParamStr(I), Name) = 0 then
      Result := True;
end;

{ The uninstaller has no wizard pages, so the choice is a small form with an unticked checkbox:
  keeping patient data must be the default, deleting it a deliberate act. }
function AskDeleteUserData(): Boolean;
var
  Form: TSetupForm;
  Note: TNewStaticText;
  Box: TNewCheckBox;
  OkButton: TNewButton;
begin
  Form := CreateCustomForm();
  try
    Form.ClientWidth := ScaleX(420);
    Form.ClientHeight := ScaleY(130);
    Form.Caption := 'Uninstall {#AppName}';
    Form.Position := poScreenCenter;

    Note := TNewStaticText.Create(Form);
    Note.Parent := Form;
    Note.Left := ScaleX(12);
    Note.Top := ScaleY(12);
    Note.Width := Form.ClientWidth - ScaleX(24);
    Note.AutoSize := False;
    Note.WordWrap := True;
    Note.Height := ScaleY(32);
    Note.Caption := 'Your medscan databases and settings in ' + UserDataDir() +
      ' are kept, so that a later installation finds them again.';

    Box := TNewCheckBox.Create(Form);
    Box.Parent := Form;
    Box.Left := ScaleX(12);
    Box.Top := ScaleY(52);
    Box.Width := Form.ClientWidth - ScaleX(24);
    Box.Height := ScaleY(24);
    Box.Caption := 'Also delete my databases and settings (this cannot be undone)';
    Box.Checked := False;

    OkButton := TNewButton.Create(Form);
    OkButton.Parent := Form;
    OkButton.Caption := 'Continue';
    OkButton.Width := ScaleX(90);
    OkButton.Height := ScaleY(25);
    OkButton.Left := Form.ClientWidth - OkButton.Width - ScaleX(12);
    OkButton.Top := Form.ClientHeight - OkButton.Height - ScaleY(12);
    OkButton.ModalResult := mrOk;
    OkButton.Default := True;

    Form.ActiveControl := OkButton;
    Result := (Form.ShowModal() = mrOk) and Box.Checked;
  finally
    Form.Free();
  end;
end;

{ Asked after Inno's own "Are you sure?" and before anything is removed. }
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  case CurUninstallStep of
    usUninstall:
      if DirExists(UserDataDir()) then
      begin
        if UninstallSilent() then
          DeleteUserData := HasSwitch('/DELETEUSERDATA')
        else
          DeleteUserData := AskDeleteUserData();
      end;
    usPostUninstall:
      if DeleteUserData then
      begin
        if DelTree(UserDataDir(), True, True, True) then
          Log('Deleted user data in ' + UserDataDir())
        else
          Log('Could not delete all of ' + UserDataDir());
      end;
  end;
end;
