// The client suite (test/xenstore/client-suite.ts) over both transports against the cxenstored xenstored.
import { clientSuite } from './client-suite.js';

clientSuite('cxenstored');
