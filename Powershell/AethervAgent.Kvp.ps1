<#
.SYNOPSIS
    Guest-facing operations: KVP items (kvp.read, kvp.write, kvp.remove) through WMI
    root\virtualization\v2 (Msvm_VirtualSystemManagementService AddKvpItems / ModifyKvpItems /
    RemoveKvpItems, Msvm_KvpExchangeComponent.GuestExchangeItems,
    Msvm_KvpExchangeComponentSettingData.HostExchangeItems), and the provisioning ISO
    (iso.attach, iso.detach). VMs are looked up by GUID, never by display name.
#>

$script:AethervVirtNs = 'root\virtualization\v2'

function Get-AethervComputerSystem {
    param($Vm)
    $guid = ([guid]$Vm.Id).ToString()
    $cs = Get-WmiObject -Namespace $script:AethervVirtNs -Class Msvm_ComputerSystem -Filter ("Name='" + $guid + "'")
    if ($null -eq $cs) { Stop-Aetherv -Code 'not_found' -Message ('Msvm_ComputerSystem ' + $guid + ' was not found') }
    return $cs
}

function Wait-AethervWmiJob {
    param($Result, [string]$What)
    if ($Result.ReturnValue -eq 0) { return }
    if ($Result.ReturnValue -ne 4096) {
        Stop-Aetherv -Code 'operation_error' -Message ($What + ' failed with return value ' + $Result.ReturnValue)
    }
    $job = [wmi]$Result.Job
    while (@(3, 4) -contains [int]$job.JobState) {
        Start-Sleep -Milliseconds 200
        $job.Get()
    }
    if ([int]$job.JobState -ne 7) {
        Stop-Aetherv -Code 'operation_error' -Message ($What + ' failed: ' + $job.ErrorDescription)
    }
}

function ConvertFrom-AethervKvpXml {
    # Msvm_KvpExchangeDataItem embedded instances (CIM DTD 2.0 XML) -> hashtable name -> data.
    param([string[]]$Items)
    $table = @{}
    foreach ($text in @($Items)) {
        if ([string]::IsNullOrWhiteSpace($text)) { continue }
        $xml = [xml]$text
        $name = $xml.SelectSingleNode("/INSTANCE/PROPERTY[@NAME='Name']/VALUE")
        $data = $xml.SelectSingleNode("/INSTANCE/PROPERTY[@NAME='Data']/VALUE")
        if ($null -ne $name) {
            $value = ''
            if ($null -ne $data) { $value = $data.InnerText }
            $table[$name.InnerText] = $value
        }
    }
    return $table
}

function Get-AethervHostKvpItems {
    param($Vm)
    $cs = Get-AethervComputerSystem -Vm $Vm
    $vssd = @($cs.GetRelated('Msvm_VirtualSystemSettingData') | Where-Object { $_.VirtualSystemType -eq 'Microsoft:Hyper-V:System:Realized' })
    if ($vssd.Count -eq 0) { return @{} }
    $kvp = @($vssd[0].GetRelated('Msvm_KvpExchangeComponentSettingData'))
    if ($kvp.Count -eq 0) { return @{} }
    return ConvertFrom-AethervKvpXml -Items $kvp[0].HostExchangeItems
}

function Get-AethervGuestKvpItems {
    param($Vm)
    $cs = Get-AethervComputerSystem -Vm $Vm
    $kvp = @($cs.GetRelated('Msvm_KvpExchangeComponent'))
    if ($kvp.Count -eq 0) { return @{} }
    return ConvertFrom-AethervKvpXml -Items $kvp[0].GuestExchangeItems
}

function New-AethervKvpItemText {
    param([string]$Name, [string]$Data)
    $class = [wmiclass]('\\.\' + $script:AethervVirtNs + ':Msvm_KvpExchangeDataItem')
    $item = $class.CreateInstance()
    $item.Name = $Name
    $item.Data = $Data
    $item.Source = 0
    return $item.PSBase.GetText(1)
}

function Invoke-AethervKvpRead {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $keys = Get-AethervStrings -Spec $Spec -Key 'keys'
    $source = Get-AethervString -Spec $Spec -Key 'source'
    if ($null -eq $source) { $source = 'guest' }
    $source = $source.ToLowerInvariant()
    if ($source -eq 'guest') { $pool = Get-AethervGuestKvpItems -Vm $vm }
    elseif ($source -eq 'host') { $pool = Get-AethervHostKvpItems -Vm $vm }
    else { Stop-Aetherv -Code 'invalid_argument' -Message ("source '" + $source + "' is not guest or host") }
    $items = @{}
    foreach ($k in $pool.Keys) {
        if ($keys.Count -eq 0 -or $keys -ccontains $k) { $items[$k] = $pool[$k] }
    }
    Write-AethervLog ('Read ' + $items.Count + ' ' + $source + " KVP item(s) of '" + $vm.Name + "'")
    return @{
        message = ('' + $items.Count + ' item(s)')
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; source = $source; items = $items }
    }
}

function Invoke-AethervKvpWrite {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $items = $null
    if ($Spec.ContainsKey('items')) { $items = $Spec['items'] }
    if ($items -isnot [hashtable]) { Stop-Aetherv -Code 'invalid_argument' -Message "field 'items' must be an object of strings" }
    foreach ($k in $items.Keys) {
        if ($items[$k] -isnot [string]) { Stop-Aetherv -Code 'invalid_argument' -Message ("KVP item '" + $k + "' must be a string") }
        if ($k.Length -eq 0 -or $k.Length -gt 256 -or $items[$k].Length -gt 1024) {
            Stop-Aetherv -Code 'invalid_argument' -Message ("KVP item '" + $k + "' exceeds the KVP size limits (name 256, value 1024)")
        }
    }
    if ([string]$vm.State -ne 'Running') {
        Write-AethervLog ("WARNING: VM '" + $vm.Name + "' is " + $vm.State + '; the guest will read the items when it runs')
    }
    $vmms = Get-WmiObject -Namespace $script:AethervVirtNs -Class Msvm_VirtualSystemManagementService
    $cs = Get-AethervComputerSystem -Vm $vm
    $existing = Get-AethervHostKvpItems -Vm $vm
    $written = @()
    foreach ($k in @($items.Keys | Sort-Object)) {
        $text = New-AethervKvpItemText -Name $k -Data $items[$k]
        if ($existing.ContainsKey($k)) {
            Wait-AethervWmiJob -Result ($vmms.ModifyKvpItems($cs, @($text))) -What ('ModifyKvpItems ' + $k)
        }
        else {
            Wait-AethervWmiJob -Result ($vmms.AddKvpItems($cs, @($text))) -What ('AddKvpItems ' + $k)
        }
        $written += $k
    }
    Write-AethervLog ('Wrote ' + $written.Count + " KVP item(s) to '" + $vm.Name + "'")
    return @{
        message = ('' + $written.Count + ' item(s) written')
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; written = $written }
    }
}

function Invoke-AethervKvpRemove {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $keys = Get-AethervStrings -Spec $Spec -Key 'keys'
    $vmms = Get-WmiObject -Namespace $script:AethervVirtNs -Class Msvm_VirtualSystemManagementService
    $cs = Get-AethervComputerSystem -Vm $vm
    $existing = Get-AethervHostKvpItems -Vm $vm
    $removed = @()
    foreach ($k in $keys) {
        if (-not $existing.ContainsKey($k)) { continue }
        $text = New-AethervKvpItemText -Name $k -Data ''
        Wait-AethervWmiJob -Result ($vmms.RemoveKvpItems($cs, @($text))) -What ('RemoveKvpItems ' + $k)
        $removed += $k
    }
    Write-AethervLog ('Removed ' + $removed.Count + " KVP item(s) from '" + $vm.Name + "'")
    return @{
        message = ('' + $removed.Count + ' item(s) removed')
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; removed = $removed }
    }
}

function Invoke-AethervIsoAttach {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $iso = Get-AethervString -Spec $Spec -Key 'iso_path'
    if ($null -eq $iso) {
        $family = Get-AethervString -Spec $Spec -Key 'os_family'
        if ($null -eq $family) { $family = Get-AethervOsFamily -Vm $vm }
        $os = 'Windows'
        if ($family -eq 'linux') { $os = 'Linux' }
        $source = Join-Path $script:AethervRoot ($os + 'Provisioning.iso')
        if (-not (Test-Path -LiteralPath $source -PathType Leaf)) {
            Stop-Aetherv -Code 'not_found' -Message ('provisioning ISO ' + $source + ' is not installed on ' + $env:COMPUTERNAME)
        }
        $iso = ([string]$vm.Path).TrimEnd('\') + '\' + $os + 'Provisioning-' + $vm.Name + '-' + [guid]::NewGuid().ToString('N').Substring(0, 8) + '.iso'
        Copy-Item -LiteralPath $source -Destination $iso
    }
    elseif (-not (Test-Path -LiteralPath $iso -PathType Leaf)) {
        Stop-Aetherv -Code 'not_found' -Message ("ISO '" + $iso + "' does not exist")
    }
    Write-AethervLog ("Add-VMDvdDrive -Path '" + $iso + "' to '" + $vm.Name + "'")
    Add-VMDvdDrive -VM $vm -Path $iso
    return @{
        message = ("ISO attached to VM '" + $vm.Name + "'")
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; iso_path = $iso }
    }
}

function Invoke-AethervIsoDetach {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $drives = @(Get-VMDvdDrive -VM $vm | Where-Object { $_.Path })
    if ($drives.Count -eq 0) {
        Write-AethervLog ("WARNING: VM '" + $vm.Name + "' has no ISO attached")
        return @{
            message = ("VM '" + $vm.Name + "' has no ISO attached")
            data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; iso_path = $null; detached = $false }
        }
    }
    $iso = [string]$drives[0].Path
    Write-AethervLog ("Remove-VMDvdDrive from '" + $vm.Name + "'; Remove-Item '" + $iso + "'")
    foreach ($d in $drives) { Remove-VMDvdDrive -VMDvdDrive $d }
    if ($iso.StartsWith(([string]$vm.Path).TrimEnd('\') + '\', [StringComparison]::OrdinalIgnoreCase)) {
        Start-Sleep -Seconds 2
        Remove-Item -LiteralPath $iso -Force -ErrorAction SilentlyContinue
    }
    return @{
        message = ("ISO detached from VM '" + $vm.Name + "'")
        data    = [ordered]@{ vm_id = [string]$vm.Id; vm_name = $vm.Name; iso_path = $iso; detached = $true }
    }
}
