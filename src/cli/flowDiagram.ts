import { smsConsentFlow } from "../flow/smsConsentFlow.js";
import { mermaidDiagram } from "../flow/diagram.js";

/** `npm run flow:diagram`: the shipped flow as a Mermaid diagram, generated from its definition. */
console.log(mermaidDiagram(smsConsentFlow));
