<#
.SYNOPSIS
    Shared helpers of the Aether-V host agent: logging, coded errors, request-spec accessors,
    host resources, VM lookup by GUID or name, and the JSON views of VMs, disks and NICs.
    Dot-sourced by Invoke-AethervAgent.ps1. Windows PowerShell 5.1.
#>

$script:AethervDataRoot = Join-Path $env:ProgramData 'Aether-V'
# Bytes per GiB (a variable rather than the 1GB literal suffix, which some PowerShell parsers
# used for linting do not know).
$script:AethervGiB = [long]1073741824

function Write-AethervLog {
    param([string]$Message)
    [Console]::Out.WriteLine($Message)
}

function Stop-Aetherv {
    # Throws an error carrying a stable agent error code.
    param(
        [Parameter(Mandatory = $true)][string]$Code,
        [Parameter(Mandatory = $true)][string]$Message
    )
    $ex = New-Object System.InvalidOperationException($Message)
    $ex.Data['aetherv_code'] = $Code
    throw $ex
}

function Get-AethervErrorCode {
    # The agent error code carried by an exception or any exception it wraps.
    param([System.Exception]$Exception)
    $e = $Exception
    while ($null -ne $e) {
        if ($e.Data.Contains('aetherv_code')) { return [string]$e.Data['aetherv_code'] }
        $e = $e.InnerException
    }
    return 'operation_error'
}

function Assert-AethervPathName {
    # Refuses a name that is not a plain Hyper-V name (it becomes a folder or file name on the
    # host): the same rules as aetherv-core's resource_name. The message never repeats the name.
    param([string]$Name, [string]$What)
    $problem = $null
    if ([string]::IsNullOrWhiteSpace($Name)) { $problem = 'is empty' }
    elseif ($Name.Length -gt 100) { $problem = 'is longer than 100 characters' }
    elseif ($Name.IndexOfAny([char[]]@('\', '/', ':', '*', '?', '"', '<', '>', '|')) -ge 0) { $problem = 'may not contain any of \ / : * ? " < > |' }
    elseif ($Name -match '[\x00-\x1f\x7f]') { $problem = 'may not contain control characters' }
    elseif ($Name -eq '.' -or $Name -eq '..') { $problem = 'may not be . or ..' }
    elseif ($Name.EndsWith('.') -or $Name.EndsWith(' ') -or $Name.StartsWith(' ')) { $problem = 'may not start with a space or end with a dot or a space' }
    else {
        $stem = $Name.Split('.')[0].TrimEnd().ToUpperInvariant()
        if ($stem -match '^(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])$') { $problem = 'is a reserved Windows device name' }
    }
    if ($null -ne $problem) { Stop-Aetherv -Code 'invalid_argument' -Message ($What + ' ' + $problem) }
}

function Join-AethervChildPath {
    # Root\Name for a plain name (Assert-AethervPathName), and the joined path must stay under
    # Root once resolved.
    param([string]$Root, [string]$Name, [string]$What)
    Assert-AethervPathName -Name $Name -What $What
    $base = [System.IO.Path]::GetFullPath($Root.TrimEnd('\') + '\')
    $full = [System.IO.Path]::GetFullPath($base + $Name)
    if (-not $full.StartsWith($base, [System.StringComparison]::OrdinalIgnoreCase) -or $full.Length -le $base.Length) {
        Stop-Aetherv -Code 'invalid_argument' -Message ($What + ' leads outside its folder')
    }
    return $full
}

function Get-AethervDiskStem {
    # The file stem of a new blank disk: <vm>-disk-<first 12 hex of SHA-256(request key)>, the
    # request key being the idempotency key (or the correlation id). Same as aetherv-core's
    # disk_file_stem: repeated requests name the same file, different requests never collide.
    param([string]$VmName)
    $key = $script:AethervRequestKey
    if ([string]::IsNullOrEmpty($key)) { $key = [string]$script:AethervCorrelationId }
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try { $bytes = $sha.ComputeHash([System.Text.Encoding]::UTF8.GetBytes($key)) }
    finally { $sha.Dispose() }
    $hex = -join ($bytes | ForEach-Object { $_.ToString('x2') })
    return $VmName + '-disk-' + $hex.Substring(0, 12)
}

function ConvertTo-AethervHashtable {
    # Converts ConvertFrom-Json output (PSCustomObject trees) to hashtables and arrays.
    param($InputObject)
    if ($null -eq $InputObject) { return $null }
    if ($InputObject -is [System.Management.Automation.PSCustomObject]) {
        $table = @{}
        foreach ($p in $InputObject.PSObject.Properties) {
            $table[$p.Name] = ConvertTo-AethervHashtable -InputObject $p.Value
        }
        return $table
    }
    if ($InputObject -is [array]) {
        $list = @()
        foreach ($item in $InputObject) { $list += , (ConvertTo-AethervHashtable -InputObject $item) }
        return , $list
    }
    return $InputObject
}

function Get-AethervAgentVersion {
    $path = Join-Path $script:AethervRoot 'version'
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) { return '0.0.0' }
    foreach ($line in [IO.File]::ReadAllLines($path)) {
        $t = $line.Trim([char]0xFEFF, [char]0, ' ', "`t", "`r", "`n")
        if ($t) { return $t }
    }
    return '0.0.0'
}

function Get-AethervString {
    param([hashtable]$Spec, [string]$Key)
    if (-not $Spec.ContainsKey($Key) -or $null -eq $Spec[$Key]) { return $null }
    $v = ([string]$Spec[$Key]).Trim()
    if ($v.Length -eq 0) { return $null }
    return $v
}

function Get-AethervRequiredString {
    param([hashtable]$Spec, [string]$Key)
    $v = Get-AethervString -Spec $Spec -Key $Key
    if ($null -eq $v) { Stop-Aetherv -Code 'invalid_argument' -Message ("missing required field '" + $Key + "'") }
    return $v
}

function Get-AethervUInt {
    # The first present key of $Keys as a non-negative integer (number or numeric string).
    param([hashtable]$Spec, [string[]]$Keys)
    foreach ($k in $Keys) {
        if (-not $Spec.ContainsKey($k) -or $null -eq $Spec[$k]) { continue }
        $raw = [string]$Spec[$k]
        [long]$n = 0
        if (-not [long]::TryParse($raw.Trim(), [ref]$n) -or $n -lt 0) {
            Stop-Aetherv -Code 'invalid_argument' -Message ("field '" + $k + "' must be a non-negative integer")
        }
        return $n
    }
    return $null
}

function Get-AethervBool {
    param([hashtable]$Spec, [string]$Key)
    if (-not $Spec.ContainsKey($Key) -or $null -eq $Spec[$Key]) { return $null }
    $v = $Spec[$Key]
    if ($v -is [bool]) { return $v }
    switch (([string]$v).Trim().ToLowerInvariant()) {
        { @('true', 'on', 'yes', '1') -contains $_ } { return $true }
        { @('false', 'off', 'no', '0') -contains $_ } { return $false }
    }
    Stop-Aetherv -Code 'invalid_argument' -Message ("field '" + $Key + "' must be a boolean")
}

function Get-AethervStrings {
    param([hashtable]$Spec, [string]$Key)
    if (-not $Spec.ContainsKey($Key) -or $null -eq $Spec[$Key]) { return , @() }
    $list = @()
    foreach ($item in @($Spec[$Key])) {
        if ($item -isnot [string]) { Stop-Aetherv -Code 'invalid_argument' -Message ("field '" + $Key + "' must be a list of strings") }
        $list += $item
    }
    return , $list
}

function Invoke-AethervOperation {
    # Runs one handler; returns @{status; message; data; code}. Coded errors become error outcomes.
    # -Lookup: a read-only lookup, whose not_found answer is an answer, not an error to log.
    param([string]$Handler, [hashtable]$Spec, [switch]$Lookup)
    try {
        # Only the handler's result table counts; stray pipeline output is ignored.
        $r = @(& $Handler -Spec $Spec) | Where-Object { $_ -is [hashtable] -and $_.ContainsKey('message') } | Select-Object -Last 1
        if ($null -eq $r) { Stop-Aetherv -Code 'operation_error' -Message ($Handler + ' returned no result') }
        return @{ status = 'success'; message = [string]$r.message; data = $r.data; code = $null }
    }
    catch {
        $code = Get-AethervErrorCode -Exception $_.Exception
        $msg = $_.Exception.Message
        if ($Lookup -and $code -eq 'not_found') { Write-AethervLog ('Not found: ' + $msg) }
        else { Write-AethervLog ('ERROR: ' + $msg) }
        return @{ status = 'error'; message = $msg; data = @{ error_type = $_.Exception.GetType().FullName }; code = $code }
    }
}

function Get-AethervHostResources {
    # hostresources.json: storage_classes [{name, path}], networks [{name, model, configuration
    # {virtual_switch, vlan_id}}], images [{name, os_family, path}], virtual_machines_path.
    $path = $env:AETHERV_HOSTRESOURCES
    if (-not $path) { $path = Join-Path $script:AethervDataRoot 'hostresources.json' }
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        Stop-Aetherv -Code 'not_found' -Message ('host resources file ' + $path + ' does not exist')
    }
    return ConvertTo-AethervHashtable -InputObject ([IO.File]::ReadAllText($path) | ConvertFrom-Json)
}

function Find-AethervVm {
    # The VM named by vm_id (GUID) and/or vm_name; both given must agree.
    param([hashtable]$Spec)
    $id = Get-AethervString -Spec $Spec -Key 'vm_id'
    $name = Get-AethervString -Spec $Spec -Key 'vm_name'
    if ($null -eq $id -and $null -eq $name) {
        Stop-Aetherv -Code 'invalid_argument' -Message "missing required field 'vm_id' or 'vm_name'"
    }
    if ($null -ne $id) {
        $guid = [guid]::Empty
        if (-not [guid]::TryParse($id, [ref]$guid)) {
            Stop-Aetherv -Code 'not_found' -Message ("Hyper-V was unable to find a virtual machine with id '" + $id + "'.")
        }
        $vm = Get-VM -Id $guid -ErrorAction SilentlyContinue
        if ($null -eq $vm) {
            Stop-Aetherv -Code 'not_found' -Message ("Hyper-V was unable to find a virtual machine with id '" + $id + "'.")
        }
        if ($null -ne $name -and $vm.Name -ne $name) {
            Stop-Aetherv -Code 'invalid_argument' -Message ("vm_id '" + $vm.Id + "' belongs to VM '" + $vm.Name + "', not '" + $name + "'")
        }
        return $vm
    }
    $found = @(Get-VM -ErrorAction SilentlyContinue | Where-Object { $_.Name -eq $name })
    if ($found.Count -eq 0) {
        Stop-Aetherv -Code 'not_found' -Message ("Hyper-V was unable to find a virtual machine with name '" + $name + "'.")
    }
    if ($found.Count -gt 1) {
        Stop-Aetherv -Code 'name_conflict' -Message ("" + $found.Count + " virtual machines are named '" + $name + "'; use vm_id")
    }
    return $found[0]
}

function Get-AethervOsFamily {
    param($Vm)
    try {
        $fw = Get-VMFirmware -VM $Vm -ErrorAction Stop
        if ($fw.SecureBootTemplate -eq 'MicrosoftUEFICertificateAuthority') { return 'linux' }
    }
    catch { }
    return 'windows'
}

function Get-AethervStorageClassOf {
    param([string]$Path)
    try {
        $res = Get-AethervHostResources
        foreach ($c in @($res['storage_classes'])) {
            if ($c -and $Path -and $Path.StartsWith(([string]$c['path']).TrimEnd('\'), [StringComparison]::OrdinalIgnoreCase)) {
                return [string]$c['name']
            }
        }
    }
    catch { }
    return $null
}

function Get-AethervDiskView {
    param($Drive)
    $size = 0
    $type = 'Dynamic'
    $shared = $false
    try {
        $vhd = Get-VHD -Path $Drive.Path -ErrorAction Stop
        $size = [long][math]::Round($vhd.Size / $script:AethervGiB)
        $type = [string]$vhd.VhdType
    }
    catch { }
    if ($Drive.PSObject.Properties.Name -contains 'SupportPersistentReservations') { $shared = [bool]$Drive.SupportPersistentReservations }
    return [ordered]@{
        disk_id             = [string]$Drive.Id
        disk_path           = [string]$Drive.Path
        size_gb             = $size
        disk_type           = $type
        image_name          = $null
        controller_type     = [string]$Drive.ControllerType
        controller_number   = [int]$Drive.ControllerNumber
        controller_location = [int]$Drive.ControllerLocation
        shared              = $shared
    }
}

function Get-AethervNetworkName {
    param([string]$Switch, $VlanId)
    try {
        $res = Get-AethervHostResources
        $nets = @($res['networks'])
        foreach ($n in $nets) {
            $c = $n['configuration']
            if ($c -and [string]$c['virtual_switch'] -eq $Switch -and [string]$c['vlan_id'] -eq [string]$VlanId) { return [string]$n['name'] }
        }
        foreach ($n in $nets) {
            $c = $n['configuration']
            if ($c -and [string]$c['vlan_id'] -eq [string]$VlanId) { return [string]$n['name'] }
        }
    }
    catch { }
    return $null
}

function Get-AethervNicView {
    param($Adapter)
    $vlan = $null
    try {
        $v = Get-VMNetworkAdapterVlan -VMNetworkAdapter $Adapter -ErrorAction Stop
        if ([string]$v.OperationMode -eq 'Access') { $vlan = [int]$v.AccessVlanId }
    }
    catch { }
    return [ordered]@{
        nic_id         = [string]$Adapter.Id
        adapter_name   = [string]$Adapter.Name
        network        = (Get-AethervNetworkName -Switch ([string]$Adapter.SwitchName) -VlanId $vlan)
        virtual_switch = [string]$Adapter.SwitchName
        vlan_id        = $vlan
        mac_address    = [string]$Adapter.MacAddress
        dhcp_guard     = ([string]$Adapter.DhcpGuard -eq 'On')
        router_guard   = ([string]$Adapter.RouterGuard -eq 'On')
        mac_spoofing   = ([string]$Adapter.MacAddressSpoofing -eq 'On')
        # Reported by the guest's integration services while the VM runs; empty otherwise.
        ip_addresses   = @(@($Adapter.IPAddresses) | Where-Object { $_ } | ForEach-Object { [string]$_ })
    }
}

function Get-AethervVmView {
    param($Vm)
    $secureBoot = $false
    try { $secureBoot = ([string](Get-VMFirmware -VM $Vm -ErrorAction Stop).SecureBoot -eq 'On') } catch { }
    $tpm = $false
    try { $tpm = [bool](Get-VMSecurity -VM $Vm -ErrorAction Stop).TpmEnabled } catch { }
    $dvd = @(Get-VMDvdDrive -VM $Vm -ErrorAction SilentlyContinue | Where-Object { $_.Path })
    $iso = $null
    if ($dvd.Count -gt 0) { $iso = [string]$dvd[0].Path }
    $disks = @()
    foreach ($d in @(Get-VMHardDiskDrive -VM $Vm -ErrorAction SilentlyContinue)) { $disks += , (Get-AethervDiskView -Drive $d) }
    $nics = @()
    foreach ($n in @(Get-VMNetworkAdapter -VM $Vm -ErrorAction SilentlyContinue)) { $nics += , (Get-AethervNicView -Adapter $n) }
    $created = $null
    if ($Vm.CreationTime) { $created = $Vm.CreationTime.ToUniversalTime().ToString('o') }
    return [ordered]@{
        vm_id          = [string]$Vm.Id
        vm_name        = [string]$Vm.Name
        state          = [string]$Vm.State
        cpu_cores      = [int]$Vm.ProcessorCount
        memory_gb      = [long][math]::Round($Vm.MemoryStartup / $script:AethervGiB)
        dynamic_memory = [bool]$Vm.DynamicMemoryEnabled
        os_family      = (Get-AethervOsFamily -Vm $Vm)
        notes          = [string]$Vm.Notes
        path           = [string]$Vm.Path
        storage_class  = (Get-AethervStorageClassOf -Path ([string]$Vm.Path))
        generation     = [int]$Vm.Generation
        secure_boot    = $secureBoot
        tpm            = $tpm
        clustered      = [bool]$Vm.IsClustered
        created_at     = $created
        dvd_iso        = $iso
        disks          = $disks
        nics           = $nics
    }
}

function Invoke-AethervNoop {
    param([hashtable]$Spec)
    Write-AethervLog 'No-op: validating the request envelope'
    $ms = Get-AethervUInt -Spec $Spec -Keys @('sleep_ms')
    if ($null -ne $ms) { Start-Sleep -Milliseconds ([int][math]::Min($ms, 60000)) }
    return @{ message = 'noop completed'; data = @{ operation_validated = $true; echo = $Spec } }
}
