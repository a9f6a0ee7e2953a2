<#
.SYNOPSIS
    Aether-V host agent entry point.
.DESCRIPTION
    Reads one JSON request (-RequestJson), validates it, checks the installed bundle against
    manifest.json, answers repeated idempotency keys from the host journal, dispatches the
    operation to the module scripts next to this file, and prints log lines followed by exactly
    one result line: "##aetherv-result " + compact JSON
    {v, status, message, data, code, correlation_id}.
    Every failure is caught and returned as status "error" with a stable code.
    Target: Windows PowerShell 5.1.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $false)]
    [string]$RequestJson
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$script:AethervRoot = Split-Path -Parent $MyInvocation.MyCommand.Path
$script:AethervCorrelationId = ''
$script:AethervResultWritten = $false
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding($false) } catch { }

function Write-AethervResult {
    param(
        [string]$Status,
        [string]$Message,
        $Data,
        [string]$Code
    )
    if ($script:AethervResultWritten) { return }
    $script:AethervResultWritten = $true
    if ($null -eq $Data) { $Data = @{} }
    $result = [ordered]@{
        v              = 1
        status         = $Status
        message        = $Message
        data           = $Data
        correlation_id = $script:AethervCorrelationId
    }
    if ($Code) { $result['code'] = $Code }
    $json = ConvertTo-Json -InputObject $result -Depth 12 -Compress
    [Console]::Out.WriteLine('##aetherv-result ' + $json)
    [Console]::Out.Flush()
}

function Test-AethervBundle {
    # Returns the names of bundle files whose SHA-256 differs from manifest.json (empty = intact).
    $manifestPath = Join-Path $script:AethervRoot 'manifest.json'
    if (-not (Test-Path -LiteralPath $manifestPath -PathType Leaf)) { return @() }
    $manifest = [IO.File]::ReadAllText($manifestPath) | ConvertFrom-Json
    $bad = @()
    foreach ($entry in @($manifest.files.PSObject.Properties)) {
        $path = Join-Path $script:AethervRoot $entry.Name
        if (-not (Test-Path -LiteralPath $path -PathType Leaf)) { $bad += $entry.Name; continue }
        $hash = (Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash
        if ($hash -ne [string]$entry.Value) { $bad += $entry.Name }
    }
    return $bad
}

$exitCode = 1
try {
    if ([string]::IsNullOrWhiteSpace($RequestJson)) {
        $RequestJson = [Console]::In.ReadToEnd()
    }
    if ([string]::IsNullOrWhiteSpace($RequestJson)) {
        Write-AethervResult -Status 'error' -Message 'Empty request: expected a JSON object with operation and spec' -Code 'invalid_request'
        exit 1
    }
    try {
        $request = $RequestJson | ConvertFrom-Json
    }
    catch {
        Write-AethervResult -Status 'error' -Message ('Invalid JSON in request: ' + $_.Exception.Message) -Code 'invalid_request'
        exit 1
    }
    if ($null -eq $request -or $request -is [array] -or $request -isnot [System.Management.Automation.PSCustomObject]) {
        Write-AethervResult -Status 'error' -Message 'Invalid request: expected a JSON object' -Code 'invalid_request'
        exit 1
    }
    if ($null -ne $request.correlation_id) { $script:AethervCorrelationId = [string]$request.correlation_id }
    if ($null -ne $request.v -and [int]$request.v -ne 1) {
        Write-AethervResult -Status 'error' -Message ('Unsupported request version ' + $request.v + '; this agent speaks version 1') -Code 'unsupported_version'
        exit 1
    }
    $operation = [string]$request.operation
    if ([string]::IsNullOrWhiteSpace($operation)) {
        Write-AethervResult -Status 'error' -Message "Invalid request: missing required field 'operation'" -Code 'invalid_request'
        exit 1
    }
    $specNames = @($request.PSObject.Properties | ForEach-Object { $_.Name })
    if ($specNames -notcontains 'spec' -or ($null -ne $request.spec -and $request.spec -isnot [System.Management.Automation.PSCustomObject])) {
        Write-AethervResult -Status 'error' -Message "Invalid request: field 'spec' must be a JSON object" -Code 'invalid_request'
        exit 1
    }

    $bad = @(Test-AethervBundle)
    if ($bad.Count -gt 0) {
        Write-AethervResult -Status 'error' -Message ('Agent bundle is corrupt: ' + ($bad -join ', ') + ' differ from manifest.json') -Code 'agent_corrupt' -Data @{ files = $bad }
        exit 1
    }

    foreach ($module in @('Common', 'Journal', 'Inventory', 'Vm', 'Disk', 'Nic', 'Kvp', 'Cluster')) {
        . (Join-Path $script:AethervRoot ('AethervAgent.' + $module + '.ps1'))
    }

    $spec = ConvertTo-AethervHashtable -InputObject $request.spec
    if ($null -eq $spec) { $spec = @{} }
    $script:AethervVersion = Get-AethervAgentVersion
    Write-AethervLog ('Aether-V agent ' + $script:AethervVersion + ' on ' + $env:COMPUTERNAME + ': ' + $operation + ' (correlation ' + $script:AethervCorrelationId + ')')

    $handlers = @{
        'host.inventory' = 'Invoke-AethervHostInventory'
        'noop'           = 'Invoke-AethervNoop'
        'vm.create'      = 'Invoke-AethervVmCreate'
        'vm.get'         = 'Invoke-AethervVmGet'
        'vm.update'      = 'Invoke-AethervVmUpdate'
        'vm.delete'      = 'Invoke-AethervVmDelete'
        'vm.power'       = 'Invoke-AethervVmPower'
        'disk.create'    = 'Invoke-AethervDiskCreate'
        'disk.update'    = 'Invoke-AethervDiskUpdate'
        'disk.delete'    = 'Invoke-AethervDiskDelete'
        'nic.create'     = 'Invoke-AethervNicCreate'
        'nic.update'     = 'Invoke-AethervNicUpdate'
        'nic.delete'     = 'Invoke-AethervNicDelete'
        'kvp.read'       = 'Invoke-AethervKvpRead'
        'kvp.write'      = 'Invoke-AethervKvpWrite'
        'kvp.remove'     = 'Invoke-AethervKvpRemove'
        'iso.attach'     = 'Invoke-AethervIsoAttach'
        'iso.detach'     = 'Invoke-AethervIsoDetach'
        'cluster.add'    = 'Invoke-AethervClusterAdd'
        'cluster.remove' = 'Invoke-AethervClusterRemove'
    }
    if (-not $handlers.ContainsKey($operation)) {
        Write-AethervResult -Status 'error' -Message ('Unsupported operation: ' + $operation) -Code 'unsupported_operation'
        exit 1
    }
    $handler = $handlers[$operation]
    $readOnly = @('host.inventory', 'noop', 'vm.get', 'kvp.read') -contains $operation
    $key = [string]$request.idempotency_key
    $script:AethervRequestKey = $key

    if ($readOnly -or [string]::IsNullOrWhiteSpace($key)) {
        $outcome = Invoke-AethervOperation -Handler $handler -Spec $spec -Lookup:$readOnly
    }
    else {
        $outcome = Invoke-AethervJournaled -Key $key -Operation $operation -Body {
            Invoke-AethervOperation -Handler $handler -Spec $spec
        }
    }
    Write-AethervResult -Status $outcome.status -Message $outcome.message -Data $outcome.data -Code $outcome.code
    if ($outcome.status -eq 'error') { $exitCode = 1 } else { $exitCode = 0 }
}
catch {
    $code = 'operation_error'
    $e = $_.Exception
    while ($null -ne $e) {
        if ($e.Data.Contains('aetherv_code')) { $code = [string]$e.Data['aetherv_code']; break }
        $e = $e.InnerException
    }
    [Console]::Out.WriteLine('ERROR: ' + $_.Exception.Message)
    Write-AethervResult -Status 'error' -Message ('Operation error: ' + $_.Exception.Message) -Code $code -Data @{ error_type = $_.Exception.GetType().FullName }
    $exitCode = 1
}
exit $exitCode
