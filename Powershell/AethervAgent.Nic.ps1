<#
.SYNOPSIS
    Network adapter operations: nic.create (logical network -> switch + access VLAN),
    nic.update, nic.delete.
#>

function Resolve-AethervNetwork {
    param([string]$Name)
    $res = Get-AethervHostResources
    foreach ($n in @($res['networks'])) {
        if ($null -ne $n -and [string]$n['name'] -eq $Name) {
            $c = $n['configuration']
            return @{ name = [string]$n['name']; switch = [string]$c['virtual_switch']; vlan = [int]$c['vlan_id'] }
        }
    }
    Stop-Aetherv -Code 'not_found' -Message ("network '" + $Name + "' is not defined on " + $env:COMPUTERNAME)
}

function Find-AethervNic {
    param($Vm, [hashtable]$Spec)
    $id = Get-AethervString -Spec $Spec -Key 'resource_id'
    if ($null -eq $id) { $id = Get-AethervString -Spec $Spec -Key 'nic_id' }
    if ($null -eq $id) { Stop-Aetherv -Code 'invalid_argument' -Message "missing required field 'resource_id'" }
    foreach ($n in @(Get-VMNetworkAdapter -VM $Vm)) {
        if ([string]$n.Id -eq $id -or [string]$n.Name -eq $id) { return $n }
    }
    Stop-Aetherv -Code 'not_found' -Message ("network adapter '" + $id + "' is not on VM '" + $Vm.Name + "'")
}

function Invoke-AethervNicCreate {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $net = Resolve-AethervNetwork -Name (Get-AethervRequiredString -Spec $Spec -Key 'network')
    $vlan = Get-AethervUInt -Spec $Spec -Keys @('vlan_id')
    if ($null -ne $vlan) {
        if ($vlan -lt 1 -or $vlan -gt 4094) { Stop-Aetherv -Code 'invalid_argument' -Message ('vlan_id ' + $vlan + ' is outside 1..4094') }
        $net.vlan = [int]$vlan
    }
    $name = Get-AethervString -Spec $Spec -Key 'adapter_name'
    if ($null -eq $name) {
        $names = @(Get-VMNetworkAdapter -VM $vm | ForEach-Object { [string]$_.Name })
        $n = $names.Count + 1
        while ($names -contains ('Network Adapter ' + $n)) { $n++ }
        $name = 'Network Adapter ' + $n
    }
    Write-AethervLog ("Add-VMNetworkAdapter -Name '" + $name + "' -SwitchName '" + $net.switch + "'")
    $adapter = Add-VMNetworkAdapter -VM $vm -Name $name -SwitchName $net.switch -Passthru
    Write-AethervLog ('Set-VMNetworkAdapterVlan -Access -VlanId ' + $net.vlan)
    Set-VMNetworkAdapterVlan -VMNetworkAdapter $adapter -Access -VlanId $net.vlan
    $adapter = Get-VMNetworkAdapter -VM $vm | Where-Object { $_.Id -eq $adapter.Id }
    $data = Get-AethervNicView -Adapter $adapter
    $data['network'] = $net.name
    $data['vm_id'] = [string]$vm.Id
    $data['vm_name'] = $vm.Name
    $data['status'] = 'created'
    return @{ message = ("Network adapter '" + $name + "' added to VM '" + $vm.Name + "'"); data = $data }
}

function Invoke-AethervNicUpdate {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $nic = Find-AethervNic -Vm $vm -Spec $Spec
    $applied = @()
    $netName = Get-AethervString -Spec $Spec -Key 'network'
    $net = $null
    if ($null -ne $netName) { $net = Resolve-AethervNetwork -Name $netName }
    $mac = Get-AethervString -Spec $Spec -Key 'mac_address'
    if ($null -ne $mac) {
        $mac = ($mac -replace '[:-]', '').ToUpperInvariant()
        if ($mac -notmatch '^[0-9A-F]{12}$') { Stop-Aetherv -Code 'invalid_argument' -Message ("'" + $mac + "' is not a MAC address") }
    }
    $view = Get-AethervNicView -Adapter $nic
    if ($null -ne $net -and $view['network'] -ne $net.name) {
        Write-AethervLog ("Connect-VMNetworkAdapter -SwitchName '" + $net.switch + "'; VLAN " + $net.vlan)
        Connect-VMNetworkAdapter -VMNetworkAdapter $nic -SwitchName $net.switch
        Set-VMNetworkAdapterVlan -VMNetworkAdapter $nic -Access -VlanId $net.vlan
        $applied += 'network'
    }
    foreach ($g in @(@{ key = 'dhcp_guard'; param = 'DhcpGuard' }, @{ key = 'router_guard'; param = 'RouterGuard' }, @{ key = 'mac_spoofing'; param = 'MacAddressSpoofing' })) {
        $want = Get-AethervBool -Spec $Spec -Key $g.key
        if ($null -ne $want -and $want -ne $view[$g.key]) {
            $value = 'Off'
            if ($want) { $value = 'On' }
            $splat = @{ VMNetworkAdapter = $nic }
            $splat[$g.param] = $value
            Set-VMNetworkAdapter @splat
            $applied += $g.key
        }
    }
    if ($null -ne $mac -and $mac -ne ([string]$nic.MacAddress).ToUpperInvariant()) {
        if ([string]$vm.State -ne 'Off') { Stop-Aetherv -Code 'invalid_state' -Message 'the MAC address can only be changed while the VM is Off' }
        Set-VMNetworkAdapter -VMNetworkAdapter $nic -StaticMacAddress $mac
        $applied += 'mac_address'
    }
    if ($applied.Count -eq 0) { $what = 'no changes' } else { $what = $applied -join ', ' }
    $message = "Network adapter '" + $nic.Name + "' updated: " + $what
    Write-AethervLog $message
    return @{
        message = $message
        data    = [ordered]@{ vm_id = [string]$vm.Id; resource_id = [string]$nic.Id; updates_applied = $applied; warnings = @(); message = $message }
    }
}

function Invoke-AethervNicDelete {
    param([hashtable]$Spec)
    $vm = Find-AethervVm -Spec $Spec
    $nic = Find-AethervNic -Vm $vm -Spec $Spec
    $id = [string]$nic.Id
    $name = [string]$nic.Name
    Write-AethervLog ("Remove-VMNetworkAdapter '" + $name + "' from '" + $vm.Name + "'")
    Remove-VMNetworkAdapter -VMNetworkAdapter $nic
    return @{
        message = ("Network adapter '" + $name + "' removed")
        data    = [ordered]@{ nic_id = $id; vm_id = [string]$vm.Id; status = 'deleted' }
    }
}
