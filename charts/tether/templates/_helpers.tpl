{{/* Labels of every object. */}}
{{- define "tether.labels" -}}
app.kubernetes.io/name: tether
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Selector of the manager's pods. */}}
{{- define "tether.selector" -}}
app.kubernetes.io/name: tether
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: traffic-manager
{{- end }}

{{/* The manager's image; the tag defaults to the chart's appVersion. */}}
{{- define "tether.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The live rules, keyed by the names users know: the traffic-manager
configmap's data, which the manager reads at start (the Deployment's env)
and may change while it runs. manager.LiveKeys are exactly these keys.
*/}}
{{- define "tether.liveRules" -}}
grpc.connectionTTL: {{ .Values.grpc.connectionTTL | quote }}
intercept.inactiveBlockTimeout: {{ .Values.intercept.inactiveBlockTimeout | quote }}
activity.reportInterval: {{ .Values.activity.reportInterval | quote }}
limits.sessionsPerUser: {{ .Values.limits.sessionsPerUser | int | quote }}
limits.tcpFlowsPerSession: {{ .Values.limits.tcpFlowsPerSession | int | quote }}
limits.udpFlowsPerSession: {{ .Values.limits.udpFlowsPerSession | int | quote }}
limits.interceptsPerSession: {{ .Values.limits.interceptsPerSession | int | quote }}
limits.noticesPerSession: {{ .Values.limits.noticesPerSession | int | quote }}
{{- end }}

{{/* Whether the manager listens on the pod's address, not loopback only:
the API server or a token file decides who calls, or a lab says anyone may. */}}
{{- define "tether.listensOnPod" -}}
{{- if or (eq .Values.auth.mode "kubernetes") .Values.auth.tokenSecret .Values.grpc.insecureListenAny }}true{{ end }}
{{- end }}

{{/* The SANs of the manager's certificate, as JSON {"dns": [...], "ips":
[...]}: its Service's names and loopback (a port-forward by hand), then
tls.extraSANs, an address where it parses as one (a dotted quad, or
anything with a colon: IPv6), a DNS name otherwise. With extras false,
only the chart's own: what a Secret of a chart before tls.extraSANs names. */}}
{{- define "tether.tlsSANs" -}}
{{- $ns := .ctx.Release.Namespace -}}
{{- $dns := list "traffic-manager" (printf "traffic-manager.%s" $ns) (printf "traffic-manager.%s.svc" $ns) "localhost" -}}
{{- $ips := list "127.0.0.1" -}}
{{- if .extras -}}
{{- range .ctx.Values.tls.extraSANs -}}
{{- if regexMatch "^[0-9]+(\\.[0-9]+){3}$|:" . -}}
{{- $ips = append $ips . -}}
{{- else -}}
{{- $dns = append $dns . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{ dict "dns" $dns "ips" $ips | toJson }}
{{- end }}

{{/* The mutating webhook's name (issue 13 item 5), which the manager's RBAC names already. */}}
{{- define "tether.webhookName" -}}
tether-agent-injector-{{ .Release.Namespace }}
{{- end }}
