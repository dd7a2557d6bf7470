# rts-agent installer for Windows (UNTESTED on Windows: no Windows host in this project's CI).
#
#   powershell -ExecutionPolicy Bypass -Command "& ([scriptblock]::Create((Invoke-RestMethod 'https://API/install.ps1'))) -Token 'AGT-...' -Server 'https://API'"
#
# What it does: a Python venv in $Prefix (default %ProgramData%\rts-agent) with the rts-agent
# package ($Source: a pip requirement, wheel URL or path), `rts-agent install --no-systemd`
# (registers with the one-time token, writes config.json readable by SYSTEM and Administrators
# only), and a scheduled task that runs `rts-agent run` as SYSTEM at boot and restarts it.
# Collectors and service control use psutil's Windows APIs (win_service_iter / win_service_get);
# see agent/README.md for what is untested.
param(
    [Parameter(Mandatory = $true)][string]$Token,
    [string]$Server = "@@SERVER_URL@@",
    [string]$Source = "@@AGENT_SOURCE@@",
    [string]$Sha256 = "@@AGENT_SHA256@@",
    [string]$Prefix = "$env:ProgramData\rts-agent",
    [string]$Services = "",
    # accept a plain http:// server that is not loopback (the agent token then crosses the network in clear)
    [switch]$Insecure
)
$ErrorActionPreference = "Stop"

if ($Sha256.StartsWith("@@")) { $Sha256 = "" }
if ($Source.StartsWith("@@")) {
    # never a bare name from a public index: the server's own wheel, checked against its hash
    $package = Invoke-RestMethod "$Server/agent/package"
    $Source = $package.url; $Sha256 = $package.sha256
}
if (-not ($Server -match '^https?://')) { throw "no server URL: pass -Server https://..." }
if (-not $Token.StartsWith("AGT-")) { throw "the token must start with AGT-" }
$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "run as Administrator: the agent controls services and reads system state"
}

$python = $null
foreach ($candidate in @("py -3.13", "py -3.12", "py -3.11", "python")) {
    $exe, $arg = $candidate.Split(" ", 2)
    if (Get-Command $exe -ErrorAction SilentlyContinue) {
        & $exe $arg -c "import sys; sys.exit(sys.version_info < (3, 11))" 2>$null
        if ($LASTEXITCODE -eq 0) { $python = $candidate; break }
    }
}
if (-not $python) { throw "Python 3.11+ is required (winget install Python.Python.3.12)" }

Write-Host "rts-agent install: server $Server, python $python, prefix $Prefix"
$exe, $arg = $python.Split(" ", 2)
if (-not (Test-Path "$Prefix\Scripts\python.exe")) { & $exe $arg -m venv $Prefix }
if ($Sha256) {
    $file = Join-Path $env:TEMP ([IO.Path]::GetFileName(($Source -split '\?')[0]))
    if ($Source -match '^https?://') { Invoke-WebRequest -Uri $Source -OutFile $file } else { Copy-Item $Source $file }
    if ((Get-FileHash $file -Algorithm SHA256).Hash.ToLower() -ne $Sha256.ToLower()) {
        throw "$Source does not match the SHA-256 the server published ($Sha256): not installed"
    }
    $Source = $file
}
& "$Prefix\Scripts\python.exe" -m pip install --quiet --disable-pip-version-check --upgrade $Source
if ($LASTEXITCODE -ne 0) { throw "pip could not install $Source" }

$state = "$Prefix\state"
$installArgs = @("--state-dir", $state, "install", "--server", $Server, "--token", $Token, "--force", "--no-systemd")
if ($Services) { $installArgs += @("--services", $Services) }
if ($Insecure -or $env:RTS_AGENT_INSECURE -eq "1") { $installArgs += @("--insecure") }
& "$Prefix\Scripts\rts-agent.exe" @installArgs
if ($LASTEXITCODE -ne 0) { throw "registration failed (exit $LASTEXITCODE)" }
icacls $state /inheritance:r /grant:r "SYSTEM:(OI)(CI)F" "Administrators:(OI)(CI)F" | Out-Null

$action = New-ScheduledTaskAction -Execute "$Prefix\Scripts\rts-agent.exe" -Argument "--state-dir `"$state`" run"
$trigger = New-ScheduledTaskTrigger -AtStartup
$settings = New-ScheduledTaskSettingsSet -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) -ExecutionTimeLimit 0
Register-ScheduledTask -TaskName "rts-agent" -Action $action -Trigger $trigger -Settings $settings -User "SYSTEM" -RunLevel Highest -Force | Out-Null
Start-ScheduledTask -TaskName "rts-agent"
Write-Host "rts-agent installed and started (scheduled task 'rts-agent')"
